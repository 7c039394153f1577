# Cloud Run v2 services: the rendezvous (private under IAM), and the worker whose UDP leaves through Cloud NAT.
#
# Terraform owns the services; Cloud Build owns the image. Both start from
# var.placeholder_image, so the first apply works before any image of ours exists, and
# every apply ignores the image (and the fields gcloud sets when it deploys one), so a
# later apply never rolls a deployed image back.
locals {
  # From variables only, so tests/infra evaluates this block offline with real Terraform.
  rendezvous_env = {
    LOG_LEVEL                   = var.log_level
    TRUST_PROXY_HEADERS         = "true"
    TRUSTED_PROXIES             = join(",", var.trusted_proxy_cidrs)
    AUTH_MODE                   = var.auth_mode
    DEBUG_ENDPOINTS             = tostring(var.debug_endpoints)
    MAX_MESSAGES_PER_SEC        = tostring(var.rendezvous_limits.max_messages_per_sec)
    MAX_CONNECTIONS_PER_ADDRESS = tostring(var.rendezvous_limits.max_connections_per_address)
    RELAY_DATAGRAMS_PER_SEC     = tostring(var.rendezvous_limits.relay_datagrams_per_sec)
    RELAY_BYTES_PER_SEC         = tostring(var.rendezvous_limits.relay_bytes_per_sec)
  }
  # Shared registry only. REGISTRY_URL itself holds Redis's auth string, so it comes from
  # Secret Manager (local.registry_secret_env, registry_store.tf).
  registry_env = var.shared_registry.enabled ? { REGISTRY_TTL_SEC = tostring(var.shared_registry.ttl_sec) } : {}
  # Startup and liveness probe path of the rendezvous. Never /healthz as a liveness probe
  # with the shared registry: /healthz answers 503 while Redis is unreachable, and Cloud
  # Run would restart every instance in a loop during a Redis outage; /livez answers 200
  # while the process runs. But only the shared-registry build of the rendezvous serves
  # /livez: on today's image a probe on it would get 404 and fail the startup probe, so
  # the in-memory configuration keeps /healthz (which cannot fail on Redis there).
  rendezvous_probe_path = var.shared_registry.enabled ? "/livez" : "/healthz"
  # Environment variables read from Secret Manager: name => { secret, version }. These
  # values never pass through Terraform (nor its state): Cloud Run reads them at start.
  rendezvous_secret_env = merge(
    var.auth_mode == "token" ? { RENDEZVOUS_TOKEN = var.rendezvous_token_secret } : {},
    var.admin_token_secret == null ? {} : { ADMIN_TOKEN = var.admin_token_secret },
  )
  worker_secret_env = var.auth_mode == "token" ? { RENDEZVOUS_TOKEN = var.rendezvous_token_secret } : {}
  container_port    = 8080
}

locals {
  # AUTH_MODE=iam: the worker fetches an ID token whose audience is RENDEZVOUS_SERVICE_URL.
  worker_env = {
    LOG_LEVEL              = var.log_level
    RENDEZVOUS_SERVICE_URL = google_cloud_run_v2_service.rendezvous.uri
    STUN_SERVERS           = join(",", var.stun_servers)
    STUN_REFRESH_SEC       = tostring(var.stun_refresh_sec)
    AUTH_MODE              = var.auth_mode
  }
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

    # Shared registry only: Direct VPC egress into our subnet for private ranges only, so
    # the rendezvous reaches Memorystore's private IP while everything else (its
    # answers, Google APIs) leaves as before. Ingress is unchanged.
    dynamic "vpc_access" {
      for_each = local.registry_enabled ? [1] : []
      content {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = google_compute_network.vpc.id
          subnetwork = google_compute_subnetwork.workers.id
        }
      }
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
        for_each = merge(local.rendezvous_env, local.registry_env)
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = merge(local.rendezvous_secret_env, local.registry_secret_env)
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

      startup_probe {
        http_get {
          path = local.rendezvous_probe_path
        }
        period_seconds    = 5
        timeout_seconds   = 3
        failure_threshold = 12
      }

      liveness_probe {
        http_get {
          path = local.rendezvous_probe_path
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

  # A revision whose env reads a secret fails to deploy until its account may read it.
  depends_on = [
    google_project_service.apis["run.googleapis.com"],
    google_secret_manager_secret_iam_member.runtime_accessor,
    google_secret_manager_secret_iam_member.registry_url_accessor,
  ]
}

# Open to anyone only with auth_mode = "token" (variables.tf refuses it with "iam"):
# then the shared RENDEZVOUS_TOKEN, not Cloud Run's IAM check, gates the workers.
resource "google_cloud_run_v2_service_iam_member" "rendezvous_public" {
  count = var.rendezvous_public ? 1 : 0

  location = google_cloud_run_v2_service.rendezvous.location
  name     = google_cloud_run_v2_service.rendezvous.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# auth_mode = "iam": the worker's own identity is what lets it through Cloud Run's front end.
resource "google_cloud_run_v2_service_iam_member" "worker_invoker" {
  count = var.auth_mode == "iam" ? 1 : 0

  location = google_cloud_run_v2_service.rendezvous.location
  name     = google_cloud_run_v2_service.rendezvous.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.worker.email}"
}

# Operators (and anything else listed) who call the private rendezvous with their ID token.
resource "google_cloud_run_v2_service_iam_member" "operator_invokers" {
  for_each = toset(var.rendezvous_invokers)

  location = google_cloud_run_v2_service.rendezvous.location
  name     = google_cloud_run_v2_service.rendezvous.name
  role     = "roles/run.invoker"
  member   = each.value
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

      dynamic "env" {
        for_each = local.worker_secret_env
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

  # The NAT must exist before the worker's first STUN request leaves the subnet, and
  # its account must be able to read its secrets before the revision can deploy.
  depends_on = [
    google_project_service.apis["run.googleapis.com"],
    google_compute_router_nat.nat,
    google_secret_manager_secret_iam_member.runtime_accessor,
  ]
}
