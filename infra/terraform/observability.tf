# Observability as code: log-based metrics for the services' events (local.log_metrics, locals.tf, from log_queries.json) and a dashboard.

resource "google_logging_metric" "events" {
  for_each = local.log_metrics

  name        = "${var.name_prefix}/${each.key}"
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
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

  dashboard_charts = concat(
    [
      {
        title    = "Requests per service (WebSocket registrations and health checks)"
        filter   = "metric.type=\"run.googleapis.com/request_count\" ${local.run_filter}"
        aligner  = "ALIGN_SUM"
        group_by = ["resource.label.service_name"]
      },
      {
        title    = "Instances per service"
        filter   = "metric.type=\"run.googleapis.com/container/instance_count\" ${local.run_filter}"
        aligner  = "ALIGN_MAX"
        group_by = ["resource.label.service_name", "metric.label.state"]
      },
    ],
    [
      for name, m in local.log_metrics : {
        title    = m.title
        filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.events[name].name}\" resource.type=\"cloud_run_revision\""
        aligner  = "ALIGN_SUM"
        group_by = [for label in m.labels : "metric.label.${label}"]
      }
    ],
  )

  dashboard = {
    displayName = "holepunch (${var.name_prefix})"
    mosaicLayout = {
      columns = 48
      tiles = [
        for i, chart in local.dashboard_charts : {
          xPos   = (i % 2) * 24
          yPos   = floor(i / 2) * 16
          width  = 24
          height = 16
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
                      crossSeriesReducer = "REDUCE_SUM"
                      groupByFields      = chart.group_by
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  }
}

resource "google_monitoring_dashboard" "holepunch" {
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [google_project_service.apis["monitoring.googleapis.com"]]
}
