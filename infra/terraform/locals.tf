# Values computed from variables only (no resource, no data source): tests/infra evaluates this whole file offline with real Terraform.

# APIs (apis.tf).
locals {
  apis = toset(concat(
    [
      "artifactregistry.googleapis.com",
      "cloudbuild.googleapis.com",
      "compute.googleapis.com",
      "iam.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
      "run.googleapis.com",
      "storage.googleapis.com",
    ],
    # Only when a service reads a secret (auth_mode = "token", admin_token_secret, the
    # shared registry's REGISTRY_URL).
    var.rendezvous_token_secret != null || var.admin_token_secret != null || var.shared_registry.enabled ? ["secretmanager.googleapis.com"] : [],
    # Memorystore, only for the shared registry.
    var.shared_registry.enabled ? ["redis.googleapis.com"] : [],
  ))
}

# Cloud NAT's addresses (nat.tf): reserved ones only when asked for.
locals {
  nat_ip_allocate_option = var.nat_static_ip_count > 0 ? "MANUAL_ONLY" : "AUTO_ONLY"
}

# The shared worker registry (worker_registry_redis.tf): Memorystore and its secret, or none.
locals {
  registry_enabled = var.shared_registry.enabled
  registry_count   = local.registry_enabled ? 1 : 0
}

# Image paths in Artifact Registry (artifact_registry.tf).
locals {
  image_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository_id}"
  images = {
    rendezvous = "${local.image_repository}/rendezvous"
    worker     = "${local.image_repository}/worker"
  }
}

# The Cloud Run services' settings (run.tf, modules/cloud-run-service).
locals {
  rendezvous_env = {
    LOG_LEVEL                   = var.log_level
    TRUST_PROXY_HEADERS         = "true"
    TRUSTED_PROXIES             = join(",", var.trusted_proxy_cidrs)
    AUTH_MODE                   = var.auth_mode
    DEBUG_ENDPOINTS             = tostring(var.debug_endpoints)
    ALLOW_KEYLESS_WORKERS       = tostring(var.allow_keyless_workers)
    MAX_MESSAGES_PER_SEC        = tostring(var.rendezvous_limits.max_messages_per_sec)
    MAX_CONNECTIONS_PER_ADDRESS = tostring(var.rendezvous_limits.max_connections_per_address)
    RELAY_DATAGRAMS_PER_SEC     = tostring(var.rendezvous_limits.relay_datagrams_per_sec)
    RELAY_BYTES_PER_SEC         = tostring(var.rendezvous_limits.relay_bytes_per_sec)
    # Caps and budgets.
    INITIATOR_RELAY_DATAGRAMS_PER_SEC = tostring(var.rendezvous_limits.initiator_relay_datagrams_per_sec)
    INITIATOR_RELAY_BYTES_PER_SEC     = tostring(var.rendezvous_limits.initiator_relay_bytes_per_sec)
    MAX_SESSIONS_PER_WORKER           = tostring(var.rendezvous_limits.max_sessions_per_worker)
    INTRODUCTIONS_PER_TARGET_PER_MIN  = tostring(var.rendezvous_limits.introductions_per_target_per_min)
  }
  # Who may be introduced to whom, and the tags workers declare (policy.py): set only when
  # given, so an empty policy leaves the rendezvous's default (no introduction).
  policy_env      = length(var.introduction_policy) > 0 ? { INTRODUCTION_POLICY = join(",", [for rule in var.introduction_policy : trimspace(rule)]) } : {}
  worker_tags_env = length(var.worker_tags) > 0 ? { WORKER_TAGS = join(",", var.worker_tags) } : {}
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
  worker_env = merge({
    LOG_LEVEL        = var.log_level
    STUN_SERVERS     = join(",", var.stun_servers)
    STUN_REFRESH_SEC = tostring(var.stun_refresh_sec)
    AUTH_MODE        = var.auth_mode
  }, local.worker_tags_env)

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
    env            = merge(local.rendezvous_env, local.registry_env, local.policy_env)
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

# Log-based metrics (observability.tf).
locals {
  # The same catalogue drives scripts/logs and scripts/verify (scripts/holepunch_logs_queries.py).
  log_catalog = jsondecode(file("${path.module}/log_queries.json"))

  service_names = {
    rendezvous = var.rendezvous_service_name
    worker     = var.worker_service_name
  }

  # One counter per catalogue query that declares a metric, selecting on the resource
  # type, the service name and jsonPayload.event, exactly as scripts/logs does.
  log_metrics = {
    for key, q in local.log_catalog.queries : q.metric.name => {
      query       = key
      title       = q.metric.title
      description = q.description
      labels      = q.metric.labels
      filter = join(" AND ", [
        "resource.type=\"${local.log_catalog.resource_type}\"",
        "resource.labels.service_name=\"${local.service_names[q.service]}\"",
        length(q.events) == 1 ? "jsonPayload.event=\"${q.events[0]}\"" : "jsonPayload.event=(${join(" OR ", formatlist("\"%s\"", q.events))})",
      ])
    } if can(q.metric)
  }
}
