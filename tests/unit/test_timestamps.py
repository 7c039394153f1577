from holepunch_protocol import iso_timestamp


def test_writes_utc_to_the_millisecond() -> None:
    assert iso_timestamp(1_764_121_359.642) == "2025-11-26T01:42:39.642+00:00"


def test_whole_seconds_still_carry_milliseconds() -> None:
    assert iso_timestamp(0.0) == "1970-01-01T00:00:00.000+00:00"


def test_truncates_rather_than_rounds_up_into_the_next_second() -> None:
    assert iso_timestamp(59.9996) == "1970-01-01T00:00:59.999+00:00"


def test_no_time_is_none() -> None:
    assert iso_timestamp(None) is None
