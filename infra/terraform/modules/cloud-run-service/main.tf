# One Cloud Run v2 service whose image is owned by Cloud Build, not by Terraform.
#
# The containers start from the image given here (a placeholder on the first apply) and
# every later apply ignores the primary container's image and the fields gcloud sets when
# it deploys one, so Terraform never rolls a deployed image back. Other containers
# (sidecars) stay Terraform's.
locals {
  # The deployed container first, so that template[0].containers[0] is always it.
  primary_container = coalesce(var.primary_container, sort(keys(var.containers))[0])
  container_names   = concat([local.primary_container], sort(setsubtract(keys(var.containers), [local.primary_container])))
}

resource "google_cloud_run_v2_service" "service" {
  name                = var.name
  location            = var.region
  description         = var.description
  ingress             = var.ingress
  deletion_protection = var.deletion_protection
  labels              = var.labels
  # true: Cloud Run's front end checks no invoker IAM (an application token gates callers
  # instead), without the allUsers binding that domain-restricted sharing refuses.
  invoker_iam_disabled = var.invoker_iam_disabled

  # A cap over all revisions together (the template's scaling is per revision).
  dynamic "scaling" {
    for_each = var.max_instance_count == null ? [] : [var.max_instance_count]
    content {
      max_instance_count = scaling.value
    }
  }

  template {
    service_account                  = var.service_account
    timeout                          = var.revision.timeout
    max_instance_request_concurrency = var.revision.max_concurrency
    session_affinity                 = var.revision.session_affinity

    scaling {
      min_instance_count = var.revision.min_instance_count
      max_instance_count = var.revision.max_instance_count
    }

    dynamic "vpc_access" {
      for_each = var.vpc_access == null ? [] : [var.vpc_access]
      content {
        egress = vpc_access.value.egress
        network_interfaces {
          network    = vpc_access.value.network
          subnetwork = vpc_access.value.subnetwork
        }
      }
    }

    dynamic "containers" {
      for_each = [for name in local.container_names : merge(var.containers[name], { name = name })]
      content {
        name       = containers.value.name
        image      = containers.value.image
        command    = containers.value.command
        args       = containers.value.args
        depends_on = length(containers.value.depends_on) > 0 ? containers.value.depends_on : null

        # Only the ingress container has a port: Cloud Run sends requests there.
        dynamic "ports" {
          for_each = containers.value.port == null ? [] : [containers.value.port]
          content {
            container_port = ports.value
          }
        }

        resources {
          limits = {
            cpu    = containers.value.resources.cpu
            memory = containers.value.resources.memory
          }
          cpu_idle          = containers.value.resources.cpu_idle
          startup_cpu_boost = containers.value.resources.startup_cpu_boost
        }

        dynamic "env" {
          for_each = containers.value.env
          content {
            name  = env.key
            value = env.value
          }
        }

        # Read by Cloud Run from Secret Manager when an instance starts: the values never
        # pass through Terraform or its state.
        dynamic "env" {
          for_each = containers.value.env_from_secrets
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value.secret
                version = env.value.version
              }
            }
          }
        }

        dynamic "startup_probe" {
          for_each = containers.value.startup_probe == null ? [] : [containers.value.startup_probe]
          content {
            http_get {
              path = startup_probe.value.path
              port = startup_probe.value.port
            }
            period_seconds    = startup_probe.value.period_seconds
            timeout_seconds   = startup_probe.value.timeout_seconds
            failure_threshold = startup_probe.value.failure_threshold
          }
        }

        dynamic "liveness_probe" {
          for_each = containers.value.liveness_probe == null ? [] : [containers.value.liveness_probe]
          content {
            http_get {
              path = liveness_probe.value.path
            }
            period_seconds    = liveness_probe.value.period_seconds
            timeout_seconds   = liveness_probe.value.timeout_seconds
            failure_threshold = liveness_probe.value.failure_threshold
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      client,
      client_version,
      template[0].annotations,
      template[0].labels,
      template[0].revision,
      template[0].containers[0].image,
    ]
  }
}
