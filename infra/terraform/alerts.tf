# Alert policies: rendezvous down or failing, fewer workers than expected, punching degraded, Cloud NAT failures, worker restarts (docs/alerts.md).
#
# Each policy notifies var.alert_notification_channels and its documentation names the
# saved log query to run first (local.alert_first_queries, locals.tf). Conditions on
# log-based metrics depend on google_logging_metric.events: Cloud Monitoring refuses a
# policy whose metric does not exist yet.
locals {
  user_metric  = { for name, m in google_logging_metric.events : name => "metric.type=\"logging.googleapis.com/user/${m.name}\"" }
  nat_resource = "resource.type=\"nat_gateway\" AND resource.labels.gateway_name=\"${google_compute_router_nat.nat.name}\""

  alert_documentation = {
    for name, query in local.alert_first_queries : name => join("\n\n", [
      "Run first: `${local.logs_command} ${query} --since 1h` (the saved query `${query}` of infra/terraform/log_queries.json).",
      "What this alert means and what to do next: docs/alerts.md, section `${name}`.",
    ])
  }
}

resource "google_monitoring_alert_policy" "rendezvous_unavailable" {
  display_name          = "holepunch (${var.name_prefix}): rendezvous not ready or failing"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "No rendezvous instance for 5 minutes"
    condition_absent {
      filter   = "metric.type=\"run.googleapis.com/container/instance_count\" AND ${local.resource_filters.rendezvous}"
      duration = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "Rendezvous answers 5xx"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_count\" AND ${local.resource_filters.rendezvous} AND metric.labels.response_code_class=\"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_thresholds.rendezvous_5xx_per_min
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = local.alert_documentation.rendezvous_unavailable
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.apis["monitoring.googleapis.com"]]
}

resource "google_monitoring_alert_policy" "workers_below_expected" {
  count = local.expected_workers > 0 ? 1 : 0

  display_name          = "holepunch (${var.name_prefix}): fewer workers than ${local.expected_workers}"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "Worker instances below ${local.expected_workers} for 10 minutes"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/container/instance_count\" AND ${local.resource_filters.worker}"
      comparison      = "COMPARISON_LT"
      threshold_value = local.expected_workers
      duration        = "600s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  # The rendezvous logs its registry's size at every registration and disconnect. With
  # the in-memory registry that is every worker; with the shared registry each instance
  # counts only its own connections, so the condition is left out.
  dynamic "conditions" {
    for_each = local.registry_enabled ? [] : ["registered"]
    content {
      display_name = "Registered workers below ${local.expected_workers}"
      condition_threshold {
        filter          = "${local.user_metric["registered_workers"]} AND ${local.resource_filters.rendezvous}"
        comparison      = "COMPARISON_LT"
        threshold_value = local.expected_workers
        duration        = "300s"
        # No change, no data: a stable fleet neither opens nor closes an incident.
        evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
        aggregations {
          alignment_period   = "300s"
          per_series_aligner = "ALIGN_PERCENTILE_05"
        }
      }
    }
  }

  documentation {
    content   = local.alert_documentation.workers_below_expected
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.apis["monitoring.googleapis.com"]]
}

# Punching degraded: too large a share of the punch results of the last 15 minutes were
# failed (punch_failures) or relayed (relay_share), once enough were reported that the
# share means something (both conditions at once).
locals {
  punch_share_alerts = {
    punch_failures = { status = "failed", share = var.alert_thresholds.punch_failure_share, title = "punch failures", condition = "Share of failed punches" }
    relay_share    = { status = "relayed", share = var.alert_thresholds.relay_share, title = "relayed sessions", condition = "Share of relayed punch results" }
  }
}

resource "google_monitoring_alert_policy" "punch_share" {
  for_each = local.punch_share_alerts

  display_name          = "holepunch (${var.name_prefix}): ${each.value.title} above ${format("%.0f", each.value.share * 100)} %"
  combiner              = "AND"
  severity              = "WARNING"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = each.value.condition
    condition_threshold {
      filter             = "${local.user_metric["punch_results"]} AND ${local.resource_filters.rendezvous} AND metric.labels.status=\"${each.value.status}\""
      denominator_filter = "${local.user_metric["punch_results"]} AND ${local.resource_filters.rendezvous}"
      comparison         = "COMPARISON_GT"
      threshold_value    = each.value.share
      duration           = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "At least ${var.alert_thresholds.min_punch_results} punch results"
    condition_threshold {
      filter          = "${local.user_metric["punch_results"]} AND ${local.resource_filters.rendezvous}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_thresholds.min_punch_results
      duration        = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = local.alert_documentation[each.key]
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.apis["monitoring.googleapis.com"]]
}

moved {
  from = google_monitoring_alert_policy.punch_failures
  to   = google_monitoring_alert_policy.punch_share["punch_failures"]
}

moved {
  from = google_monitoring_alert_policy.relay_share
  to   = google_monitoring_alert_policy.punch_share["relay_share"]
}

# Cloud NAT's own metrics: it could not allocate ports to an instance, or it dropped
# packets (out of resources, or endpoint-independence conflicts).
resource "google_monitoring_alert_policy" "nat_failures" {
  display_name          = "holepunch (${var.name_prefix}): Cloud NAT allocation failures or dropped packets"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "NAT port allocation failed"
    condition_threshold {
      filter          = "metric.type=\"router.googleapis.com/nat/nat_allocation_failed\" AND ${local.nat_resource}"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_COUNT_TRUE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "NAT dropped sent packets"
    condition_threshold {
      filter          = "metric.type=\"router.googleapis.com/nat/dropped_sent_packets_count\" AND ${local.nat_resource}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_thresholds.nat_dropped_packets_per_min
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.labels.reason"]
      }
    }
  }

  documentation {
    content   = local.alert_documentation.nat_failures
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.apis["monitoring.googleapis.com"]]
}

# Each worker process logs udp_socket_bound once when it starts: more starts in an hour
# than a rollout of every worker explains means workers crash or are replaced.
resource "google_monitoring_alert_policy" "worker_restarts" {
  display_name          = "holepunch (${var.name_prefix}): workers restarting"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "More than ${local.expected_workers + var.alert_thresholds.worker_restarts_per_hour} worker starts in an hour"
    condition_threshold {
      filter          = "${local.user_metric["worker_starts"]} AND ${local.resource_filters.worker}"
      comparison      = "COMPARISON_GT"
      threshold_value = local.expected_workers + var.alert_thresholds.worker_restarts_per_hour
      duration        = "0s"
      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = local.alert_documentation.worker_restarts
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.apis["monitoring.googleapis.com"]]
}
