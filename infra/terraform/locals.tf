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
  # /readyz answers 200 only once STUN has answered or the rendezvous has acknowledged the
  # worker, so the probe proves egress through Cloud NAT works. Direct VPC egress can take
  # a minute to work after start: allow two.
  worker_startup_probe = { path = "/readyz", port = local.worker_http_port, period_seconds = 5, timeout_seconds = 3, failure_threshold = 24 }
  # Environment variables read from Secret Manager: name => { secret, version }. These
  # values never pass through Terraform (nor its state): Cloud Run reads them at start.
  rendezvous_secret_env = merge(
    var.auth_mode == "token" ? { RENDEZVOUS_TOKEN = var.rendezvous_token_secret } : {},
    var.admin_token_secret == null ? {} : { ADMIN_TOKEN = var.admin_token_secret },
  )
  worker_secret_env = var.auth_mode == "token" ? { RENDEZVOUS_TOKEN = var.rendezvous_token_secret } : {}
  container_port    = 8080
  # The worker's own HTTP server (/readyz, /status), on the loopback the sidecars share.
  worker_http_port = local.container_port

  # AUTH_MODE=iam: the worker fetches an ID token whose audience is RENDEZVOUS_SERVICE_URL,
  # which the module call adds (it is the rendezvous's URL, known after it is created).
  worker_env = merge({
    LOG_LEVEL        = var.log_level
    STUN_SERVERS     = join(",", var.stun_servers)
    STUN_REFRESH_SEC = tostring(var.stun_refresh_sec)
    AUTH_MODE        = var.auth_mode
  }, local.worker_tags_env, local.data_plane_env)

  # The data plane's settings (README, data plane), each only when given. The applications'
  # ports are exposed to peers with those the operator lists.
  # In numeric order (sort() orders text: zero-padded first).
  expose_ports     = [for port in sort(distinct([for port in concat(var.worker_data_plane.expose_ports, flatten(var.app_containers[*].ports)) : format("%05d", port)])) : tostring(tonumber(port))]
  expose_udp_ports = [for port in sort(distinct([for port in var.worker_data_plane.expose_udp_ports : format("%05d", port)])) : tostring(tonumber(port))]
  data_plane_env = { for name, value in {
    EXPOSE_PORTS     = join(",", local.expose_ports)
    EXPOSE_UDP_PORTS = join(",", local.expose_udp_ports)
    SOCKS_LISTEN     = coalesce(var.worker_data_plane.socks_listen, "-")
    TCP_FORWARDS     = join(",", var.worker_data_plane.tcp_forwards)
    UDP_FORWARDS     = join(",", var.worker_data_plane.udp_forwards)
  } : name => value if value != "" && value != "-" }

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

  # The worker pool's container: no port to serve (no ingress) and CPU always allocated,
  # so neither is set; the startup probe names the worker's HTTP port itself.
  worker_pool_container = {
    image         = var.placeholder_image
    resources     = { cpu = var.worker_resources.cpu, memory = var.worker_resources.memory }
    startup_probe = local.worker_startup_probe
  }

  # The application beside the worker: sidecars started once the worker is ready, on
  # the loopback they share with it. Sidecars have no port Cloud Run sends requests to.
  app_containers = {
    for app in var.app_containers : app.name => {
      image      = app.image
      command    = app.command
      args       = app.args
      env        = app.env
      resources  = { cpu = app.resources.cpu, memory = app.resources.memory }
      depends_on = ["worker"]
    }
  }
  app_service_containers = {
    for name, app in local.app_containers : name => merge(app, {
      resources = merge(app.resources, { cpu_idle = false, startup_cpu_boost = true })
    })
  }

  worker_on_pool = var.worker_host == "worker_pool"
  # The workers that should be registered: the alert on fewer (alerts.tf).
  expected_workers = coalesce(var.expected_workers, local.worker_on_pool ? var.worker_instance_count : var.worker_min_instances)
}

# Log-based metrics (observability.tf).
locals {
  # The same catalogue drives scripts/logs and scripts/verify (scripts/holepunch_logs_queries.py).
  log_catalog = jsondecode(file("${path.module}/log_queries.json"))

  service_names = {
    rendezvous = var.rendezvous_service_name
    worker     = var.worker_service_name
  }

  # Where each service's logs are: a worker pool logs under its own resource type.
  log_resources = {
    rendezvous = local.log_catalog.resource_types.service
    worker     = local.log_catalog.resource_types[local.worker_on_pool ? "worker_pool" : "service"]
  }

  # Each service's entries and Cloud Run metrics (the monitored resource is the same): its
  # resource type and its name. Log-based metrics, alerts and logs_commands select on it.
  resource_filters = {
    for service, r in local.log_resources : service => "resource.type=\"${r.type}\" AND resource.labels.${r.name_label}=\"${local.service_names[service]}\""
  }

  # One metric per catalogue query that declares one, selecting on the resource type, the
  # service's (or worker pool's) name and jsonPayload.event, exactly as scripts/logs does.
  # A counter, or with value_field a distribution of that field's values.
  log_metrics = {
    for key, q in local.log_catalog.queries : q.metric.name => {
      query       = key
      title       = q.metric.title
      description = q.description
      labels      = q.metric.labels
      value_field = try(q.metric.value_field, null)
      filter = join(" AND ", [
        local.resource_filters[q.service],
        length(q.events) == 1 ? "jsonPayload.event=\"${q.events[0]}\"" : "jsonPayload.event=(${join(" OR ", formatlist("\"%s\"", q.events))})",
      ])
    } if can(q.metric)
  }
}

# The dashboard's tiles (observability.tf): two columns of charts, in chart order. The
# Monitoring API drops xPos and yPos when they are 0, so writing them makes a permanent
# diff (provider issue #16173): a tile in the first column or row leaves them out.
locals {
  dashboard_chart_count = 2 + (local.worker_on_pool ? 1 : 0) + length(local.log_metrics)
  dashboard_tile_layout = [
    for i in range(local.dashboard_chart_count) : merge(
      { width = 24, height = 16 },
      i % 2 == 0 ? {} : { xPos = 24 },
      floor(i / 2) == 0 ? {} : { yPos = floor(i / 2) * 16 },
    )
  ]
}

# Alert policies (alerts.tf): the saved log query (log_queries.json) each one's
# documentation tells the operator to run first.
locals {
  alert_first_queries = {
    rendezvous_unavailable = "rendezvous-lifecycle"
    workers_below_expected = "disconnects"
    punch_failures         = "punch-results"
    relay_share            = "punching"
    nat_failures           = "stun-failures"
    worker_restarts        = "worker-lifecycle"
  }
  # scripts/logs with this deployment's names, for the alerts' documentation.
  logs_command = "scripts/logs --project=${var.project_id} --rendezvous-service=${var.rendezvous_service_name} --worker-service=${var.worker_service_name}"
}
