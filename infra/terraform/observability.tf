# Observability as code: log-based metrics for the services' events (local.log_metrics, locals.tf, from log_queries.json) and a dashboard.

resource "google_logging_metric" "events" {
  for_each = local.log_metrics

  name        = "${var.name_prefix}/${each.key}"
  description = each.value.description
  filter      = each.value.filter

  # A counter of matching entries, or the distribution of one numeric field (value_field).
  value_extractor = each.value.value_field == null ? null : "EXTRACT(jsonPayload.${each.value.value_field})"

  dynamic "bucket_options" {
    for_each = each.value.value_field == null ? [] : [each.value.value_field]
    content {
      # Exact up to 64, then one bucket a step of 64: registries of up to 4,096 workers.
      linear_buckets {
        num_finite_buckets = 128
        width              = 1
        offset             = 0
      }
    }
  }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = each.value.value_field == null ? "INT64" : "DISTRIBUTION"
    unit         = "1"
    display_name = "holepunch: ${each.value.title}"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key         = labels.value
        value_type  = "STRING"
        description = "jsonPayload.${labels.value} of the log entry."
      }
    }
  }

  label_extractors = { for label in each.value.labels : label => "EXTRACT(jsonPayload.${label})" }

  depends_on = [google_project_service.apis["logging.googleapis.com"]]
}

locals {
  run_filter = "resource.type=\"cloud_run_revision\" resource.label.service_name=one_of(\"${var.rendezvous_service_name}\",\"${var.worker_service_name}\")"
  # A worker pool's instances are reported under its own resource type.
  worker_pool_filter = "resource.type=\"cloud_run_worker_pool\" resource.label.worker_pool_name=\"${var.worker_service_name}\""

  dashboard_charts = concat(
    [
      {
        title    = "Requests per service (WebSocket registrations and health checks)"
        filter   = "metric.type=\"run.googleapis.com/request_count\" ${local.run_filter}"
        aligner  = "ALIGN_SUM"
        reducer  = "REDUCE_SUM"
        group_by = ["resource.label.service_name"]
      },
      {
        title    = "Instances per service"
        filter   = "metric.type=\"run.googleapis.com/container/instance_count\" ${local.run_filter}"
        aligner  = "ALIGN_MAX"
        reducer  = "REDUCE_SUM"
        group_by = ["resource.label.service_name", "metric.label.state"]
      },
    ],
    local.worker_on_pool ? [
      {
        title    = "Worker pool instances"
        filter   = "metric.type=\"run.googleapis.com/container/instance_count\" ${local.worker_pool_filter}"
        aligner  = "ALIGN_MAX"
        reducer  = "REDUCE_SUM"
        group_by = ["metric.label.state"]
      },
    ] : [],
    [
      for name, m in local.log_metrics : {
        title  = m.title
        filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.events[name].name}\" resource.type=\"${local.log_resources[local.log_catalog.queries[m.query].service].type}\""
        # A distribution (value_field) is charted by its median, per series.
        aligner  = m.value_field == null ? "ALIGN_SUM" : "ALIGN_PERCENTILE_50"
        reducer  = m.value_field == null ? "REDUCE_SUM" : "REDUCE_NONE"
        group_by = [for label in m.labels : "metric.label.${label}"]
      }
    ],
  )

  dashboard = {
    displayName = "holepunch (${var.name_prefix})"
    mosaicLayout = {
      columns = 48
      # Positions and sizes: local.dashboard_tile_layout (locals.tf).
      tiles = [
        for i, chart in local.dashboard_charts : merge(local.dashboard_tile_layout[i], {
          widget = {
            title = chart.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = chart.filter
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = chart.aligner
                      crossSeriesReducer = chart.reducer
                      groupByFields      = chart.group_by
                    }
                  }
                }
              }]
            }
          }
        })
      ]
    }
  }
}

resource "google_monitoring_dashboard" "holepunch" {
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [google_project_service.apis["monitoring.googleapis.com"]]
}
