# One Cloud Run v2 worker pool (a fixed number of instances, no ingress) whose first container's image is owned by Cloud Build.
#
# Like modules/cloud-run-service: the containers start from the images given here and
# every later apply ignores the first container's image and the fields gcloud sets when it
# deploys one (`gcloud run worker-pools update --container`), so Terraform never rolls a
# deployed image back. The other containers (sidecars) stay Terraform's.
locals {
  # The deployed container first, so that template[0].containers[0] is always it.
  container_names = concat([var.primary_container], sort(setsubtract(keys(var.containers), [var.primary_container])))
}

resource "google_cloud_run_v2_worker_pool" "pool" {
  name                = var.name
  location            = var.region
  description         = var.description
  deletion_protection = var.deletion_protection
  labels              = var.labels

  # Manual scaling: exactly instance_count instances, replaced when they stop.
  scaling {
    scaling_mode          = "MANUAL"
    manual_instance_count = var.instance_count
  }

  template {
    service_account = var.service_account

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

        resources {
          limits = {
            cpu    = containers.value.resources.cpu
            memory = containers.value.resources.memory
          }
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

        # A worker pool has no port of its own: the probe names the one the container listens on.
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
