# Cloud Run v2 services: the public rendezvous, and the worker whose UDP leaves through Cloud NAT.
#
# Terraform owns the services; Cloud Build owns the image. Both start from
# var.placeholder_image, so the first apply works before any image of ours exists, and
# every apply ignores the image (and the fields gcloud sets when it deploys one), so a
# later apply never rolls a deployed image back.
locals {
  rendezvous_env = {
    LOG_LEVEL           = var.log_level
    TRUST_PROXY_HEADERS = "true"
    TRUSTED_PROXIES     = join(",", var.trusted_proxy_cidrs)
  }
  worker_env = {
    LOG_LEVEL              = var.log_level
    RENDEZVOUS_SERVICE_URL = google_cloud_run_v2_service.rendezvous.uri
    STUN_SERVERS           = join(",", var.stun_servers)
    STUN_REFRESH_SEC       = tostring(var.stun_refresh_sec)
  }
  container_port = 8080
}

resource "google_cloud_run_v2_service" "rendezvous" {
  name                = var.rendezvous_service_name
  location            = var.region
  description         = "holepunch rendezvous: workers register over WebSocket and report their public UDP endpoints."
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection

  template {
    service_account = google_service_account.rendezvous.email
    # Each WebSocket is a request: keep it open as long as Cloud Run allows, then the worker reconnects.
    timeout                          = "3600s"
    max_instance_request_concurrency = var.rendezvous_concurrency
    session_affinity                 = true

    scaling {
      min_instance_count = var.rendezvous_min_instances
      max_instance_count = var.rendezvous_max_instances
    }

    containers {
      name  = "rendezvous"
      image = var.placeholder_image

      ports {
        container_port = local.container_port
      }

      resources {
        limits = {
          cpu    = var.rendezvous_resources.cpu
          memory = var.rendezvous_resources.memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.rendezvous_env
        content {
          name  = env.key
          value = env.value
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 5
        timeout_seconds   = 3
        failure_threshold = 12
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
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

    precondition {
      condition     = var.rendezvous_min_instances <= var.rendezvous_max_instances
      error_message = "rendezvous_min_instances must not exceed rendezvous_max_instances."
    }
  }

  depends_on = [google_project_service.apis["run.googleapis.com"]]
}

# Open to anyone while var.rendezvous_public says so (until workers authenticate).
resource "google_cloud_run_v2_service_iam_member" "rendezvous_public" {
  count = var.rendezvous_public ? 1 : 0

  location = google_cloud_run_v2_service.rendezvous.location
  name     = google_cloud_run_v2_service.rendezvous.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service" "worker" {
  name                = var.worker_service_name
  location            = var.region
  description         = "holepunch worker: holds a UDP socket, learns its public endpoint through STUN and registers it with the rendezvous."
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection

  template {
    service_account = google_service_account.worker.email

    scaling {
      min_instance_count = var.worker_min_instances
      max_instance_count = var.worker_max_instances
    }

    # Direct VPC egress for all traffic: the worker's UDP leaves through our Cloud NAT
    # (endpoint-independent mapping), not through Cloud Run's shared egress.
    vpc_access {
      egress = "ALL_TRAFFIC"
      network_interfaces {
        network    = google_compute_network.vpc.id
        subnetwork = google_compute_subnetwork.workers.id
      }
    }

    containers {
      name  = "worker"
      image = var.placeholder_image

      ports {
        container_port = local.container_port
      }

      resources {
        limits = {
          cpu    = var.worker_resources.cpu
          memory = var.worker_resources.memory
        }
        # CPU always allocated: the WebSocket, STUN refresh and UDP socket run between requests.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.worker_env
        content {
          name  = env.key
          value = env.value
        }
      }

      # Direct VPC egress can take a minute to work after start: allow two.
      startup_probe {
        http_get {
          path = "/"
        }
        period_seconds    = 5
        timeout_seconds   = 3
        failure_threshold = 24
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

    precondition {
      condition     = var.worker_min_instances <= var.worker_max_instances
      error_message = "worker_min_instances must not exceed worker_max_instances."
    }

    precondition {
      condition     = var.stun_refresh_sec < var.nat_udp_idle_timeout_sec
      error_message = "stun_refresh_sec must be below nat_udp_idle_timeout_sec, or Cloud NAT drops the worker's UDP mapping between refreshes."
    }
  }

  # The NAT must exist before the worker's first STUN request leaves the subnet.
  depends_on = [
    google_project_service.apis["run.googleapis.com"],
    google_compute_router_nat.nat,
  ]
}
