# Cloud Run v2 services: the rendezvous (private under IAM), and the worker whose UDP leaves through Cloud NAT.
#
# Terraform owns the services; Cloud Build owns the image. Both are made by
# modules/cloud-run-service and start from var.placeholder_image, so the first apply works
# before any image of ours exists; the module ignores the image on later applies.
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
  # Secret Manager (local.registry_secret_env, worker_registry_redis.tf).
  registry_env = var.shared_registry.enabled ? { REGISTRY_TTL_SEC = tostring(var.shared_registry.ttl_sec) } : {}
  # Both probes of the rendezvous on /livez, which answers 200 while the process runs. Not
  # /healthz: it answers 503 while Redis is unreachable, and a liveness probe on it would
  # make Cloud Run restart every instance in a loop during a Redis outage.
  rendezvous_probes = {
    startup  = { path = "/livez", period_seconds = 5, timeout_seconds = 3, failure_threshold = 12 }
    liveness = { path = "/livez", period_seconds = 30, timeout_seconds = 5, failure_threshold = 3 }
  }
  # Direct VPC egress can take a minute to work after start: allow two.
  worker_startup_probe = { path = "/", period_seconds = 5, timeout_seconds = 3, failure_threshold = 24 }
  # Environment variables read from Secret Manager: name => { secret, version }. These
  # values never pass through Terraform (nor its state): Cloud Run reads them at start.
  rendezvous_secret_env = merge(
    var.auth_mode == "token" ? { RENDEZVOUS_TOKEN = var.rendezvous_token_secret } : {},
    var.admin_token_secret == null ? {} : { ADMIN_TOKEN = var.admin_token_secret },
  )
  worker_secret_env = var.auth_mode == "token" ? { RENDEZVOUS_TOKEN = var.rendezvous_token_secret } : {}
  container_port    = 8080

  # AUTH_MODE=iam: the worker fetches an ID token whose audience is RENDEZVOUS_SERVICE_URL,
  # which the module call adds (it is the rendezvous's URL, known after it is created).
  worker_env = {
    LOG_LEVEL        = var.log_level
    STUN_SERVERS     = join(",", var.stun_servers)
    STUN_REFRESH_SEC = tostring(var.stun_refresh_sec)
    AUTH_MODE        = var.auth_mode
  }

  # Each service's revision and container, from variables only (the module calls add what
  # comes from other resources).
  rendezvous_revision = {
    min_instance_count = var.rendezvous_min_instances
    max_instance_count = var.rendezvous_max_instances
    # Each WebSocket is a request: keep it open as long as Cloud Run allows, then the worker reconnects.
    timeout          = "3600s"
    max_concurrency  = var.rendezvous_concurrency
    session_affinity = true
  }
  rendezvous_container = {
    image = var.placeholder_image
    port  = local.container_port
    resources = {
      cpu               = var.rendezvous_resources.cpu
      memory            = var.rendezvous_resources.memory
      cpu_idle          = true
      startup_cpu_boost = true
    }
    env            = merge(local.rendezvous_env, local.registry_env)
    startup_probe  = local.rendezvous_probes.startup
    liveness_probe = local.rendezvous_probes.liveness
  }
  worker_revision = {
    min_instance_count = var.worker_min_instances
    max_instance_count = var.worker_max_instances
  }
  worker_container = {
    image = var.placeholder_image
    port  = local.container_port
    resources = {
      cpu    = var.worker_resources.cpu
      memory = var.worker_resources.memory
      # CPU always allocated: the WebSocket, STUN refresh and UDP socket run between requests.
      cpu_idle          = false
      startup_cpu_boost = true
    }
    startup_probe = local.worker_startup_probe
  }
}

module "rendezvous" {
  source = "./modules/cloud-run-service"

  name                = var.rendezvous_service_name
  region              = var.region
  description         = "holepunch rendezvous: workers register over WebSocket and report their public UDP endpoints."
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  service_account     = google_service_account.rendezvous.email
  revision            = local.rendezvous_revision
  containers = {
    rendezvous = merge(local.rendezvous_container, {
      env_from_secrets = merge(local.rendezvous_secret_env, local.registry_secret_env)
    })
  }
  # Shared registry only: Direct VPC egress into our subnet for private ranges only, so
  # the rendezvous reaches Memorystore's private IP while everything else (its
  # answers, Google APIs) leaves as before. Ingress is unchanged.
  vpc_access = local.registry_enabled ? {
    egress     = "PRIVATE_RANGES_ONLY"
    network    = google_compute_network.vpc.id
    subnetwork = google_compute_subnetwork.workers.id
  } : null

  # A revision whose env reads a secret fails to deploy until its account may read it.
  depends_on = [
    google_project_service.apis["run.googleapis.com"],
    google_secret_manager_secret_iam_member.runtime_accessor,
    google_secret_manager_secret_iam_member.registry_url_accessor,
  ]
}

module "worker" {
  source = "./modules/cloud-run-service"

  name                = var.worker_service_name
  region              = var.region
  description         = "holepunch worker: holds a UDP socket, learns its public endpoint through STUN and registers it with the rendezvous."
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  service_account     = google_service_account.worker.email
  revision            = local.worker_revision
  containers = {
    worker = merge(local.worker_container, {
      env              = merge(local.worker_env, { RENDEZVOUS_SERVICE_URL = module.rendezvous.uri })
      env_from_secrets = local.worker_secret_env
    })
  }
  # Direct VPC egress for all traffic: the worker's UDP leaves through our Cloud NAT
  # (endpoint-independent mapping), not through Cloud Run's shared egress.
  vpc_access = {
    egress     = "ALL_TRAFFIC"
    network    = google_compute_network.vpc.id
    subnetwork = google_compute_subnetwork.workers.id
  }

  # The NAT must exist before the worker's first STUN request leaves the subnet, and
  # its account must be able to read its secrets before the revision can deploy.
  depends_on = [
    google_project_service.apis["run.googleapis.com"],
    google_compute_router_nat.nat,
    google_secret_manager_secret_iam_member.runtime_accessor,
  ]
}

# The services were root resources before modules/cloud-run-service: these keep an existing
# deployment's services (and their URLs) instead of destroying and re-creating them.
moved {
  from = google_cloud_run_v2_service.rendezvous
  to   = module.rendezvous.google_cloud_run_v2_service.service
}

moved {
  from = google_cloud_run_v2_service.worker
  to   = module.worker.google_cloud_run_v2_service.service
}

# Open to anyone only with auth_mode = "token" (variables.tf refuses it with "iam"):
# then the shared RENDEZVOUS_TOKEN, not Cloud Run's IAM check, gates the workers.
resource "google_cloud_run_v2_service_iam_member" "rendezvous_public" {
  count = var.rendezvous_public ? 1 : 0

  location = module.rendezvous.location
  name     = module.rendezvous.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# auth_mode = "iam": the worker's own identity is what lets it through Cloud Run's front end.
resource "google_cloud_run_v2_service_iam_member" "worker_invoker" {
  count = var.auth_mode == "iam" ? 1 : 0

  location = module.rendezvous.location
  name     = module.rendezvous.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.worker.email}"
}

# Operators (and anything else listed) who call the private rendezvous with their ID token.
resource "google_cloud_run_v2_service_iam_member" "operator_invokers" {
  for_each = toset(var.rendezvous_invokers)

  location = module.rendezvous.location
  name     = module.rendezvous.name
  role     = "roles/run.invoker"
  member   = each.value
}
