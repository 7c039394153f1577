# Input variables, alphabetical; each one typed, described and, where a bad value would only fail at apply, validated.
variable "admin_token_secret" {
  description = "Secret Manager secret (in this project) holding the rendezvous's ADMIN_TOKEN, the bearer token operators send for /debug/* and /admin/* (at least 16 characters). Only the rendezvous's service account can read it. null (the default) leaves ADMIN_TOKEN unset, which closes those endpoints."
  type = object({
    secret  = string
    version = optional(string, "latest")
  })
  default = null

  validation {
    condition = var.admin_token_secret == null || try(
      can(regex("^[A-Za-z0-9_-]{1,255}$", var.admin_token_secret.secret)) && can(regex("^(latest|[1-9][0-9]*|[A-Za-z][A-Za-z0-9_-]{0,62})$", var.admin_token_secret.version)),
      false,
    )
    error_message = "admin_token_secret.secret must be a secret ID in this project (letters, digits, - and _), and its version \"latest\", a version number or an alias."
  }
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channels (projects/<project>/notificationChannels/<id>, made in the console or with gcloud) that every alert policy notifies. Empty (the default): the policies still open incidents, visible in Monitoring > Alerting, but notify no one."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.alert_notification_channels : can(regex("^projects/[a-z0-9-]+/notificationChannels/[0-9]+$", c))])
    error_message = "alert_notification_channels must be notification channel names such as projects/my-project/notificationChannels/1234567890."
  }
}

variable "alert_thresholds" {
  description = "When the alert policies (alerts.tf, docs/alerts.md) fire: rendezvous 5xx responses per minute (rendezvous_5xx_per_min), the share of punch results over 15 minutes that failed (punch_failure_share) or went through the relay (relay_share), both only once at least min_punch_results were reported, NAT packets dropped per minute (nat_dropped_packets_per_min), and worker starts per hour beyond the expected workers (worker_restarts_per_hour)."
  type = object({
    rendezvous_5xx_per_min      = optional(number, 5)
    punch_failure_share         = optional(number, 0.2)
    relay_share                 = optional(number, 0.5)
    min_punch_results           = optional(number, 10)
    nat_dropped_packets_per_min = optional(number, 10)
    worker_restarts_per_hour    = optional(number, 3)
  })
  default  = {}
  nullable = false

  validation {
    condition = alltrue([
      for share in [var.alert_thresholds.punch_failure_share, var.alert_thresholds.relay_share] : share > 0 && share <= 1
    ])
    error_message = "alert_thresholds.punch_failure_share and relay_share must be shares above 0 and at most 1 (0.2 = 20 %)."
  }

  validation {
    condition = alltrue([
      for count in [
        var.alert_thresholds.rendezvous_5xx_per_min,
        var.alert_thresholds.min_punch_results,
        var.alert_thresholds.nat_dropped_packets_per_min,
        var.alert_thresholds.worker_restarts_per_hour,
      ] : count >= 0 && count <= 1000000
    ])
    error_message = "alert_thresholds.rendezvous_5xx_per_min, min_punch_results, nat_dropped_packets_per_min and worker_restarts_per_hour must be from 0 to 1000000."
  }
}

variable "allow_keyless_workers" {
  description = "ALLOW_KEYLESS_WORKERS of the rendezvous: serve workers of the original design that prove no key (listed as keyless, introduced with a null key). Off: every worker must prove its key, so a client holding the shared credential cannot take over another worker's id. Turn on only while old workers are replaced."
  type        = bool
  default     = false
  nullable    = false
}

variable "app_containers" {
  description = "The application beside the worker: sidecar containers in the worker's pool (or service), sharing its loopback, so the application reaches peers through the worker's SOCKS proxy and forwards (worker_data_plane) and serves peers on its own ports. Each: name, image, optional command and args, env, ports (TCP ports it listens on loopback; they are added to the worker's EXPOSE_PORTS, so peers may open streams to them), resources (cpu, memory). They start after the worker is ready (its /readyz). Images here are Terraform's: Cloud Build deploys only the worker's. Empty (the default): the worker alone."
  type = list(object({
    name    = string
    image   = string
    command = optional(list(string))
    args    = optional(list(string))
    env     = optional(map(string), {})
    ports   = optional(list(number), [])
    resources = optional(object({
      cpu    = optional(string, "1")
      memory = optional(string, "512Mi")
    }), {})
  }))
  default  = []
  nullable = false

  validation {
    condition = length(var.app_containers) <= 9 && alltrue([
      for app in var.app_containers : can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", app.name)) && app.name != "worker" && length(app.image) > 0
    ]) && length(distinct([for app in var.app_containers : app.name])) == length(var.app_containers)
    error_message = "app_containers: at most 9 (the worker makes 10, Cloud Run's limit), each with a distinct name of lowercase letters, digits and hyphens (not \"worker\") and an image."
  }

  validation {
    condition = alltrue(flatten([
      for app in var.app_containers : [for port in app.ports : port >= 1 && port <= 65535 && floor(port) == port && port != 8080]
    ])) && length(distinct(flatten(var.app_containers[*].ports))) == length(flatten(var.app_containers[*].ports))
    error_message = "app_containers ports must be whole numbers from 1 to 65535, each listed once across all containers, and not 8080 (the worker's own HTTP port on the shared loopback)."
  }

  validation {
    condition     = alltrue([for app in var.app_containers : length(setintersection(keys(app.env), ["PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"])) == 0])
    error_message = "app_containers env must not set PORT, K_SERVICE, K_REVISION or K_CONFIGURATION: Cloud Run reserves them."
  }
}

variable "artifact_keep_count" {
  description = "How many of the most recent versions of each image the Artifact Registry cleanup policy keeps; older ones are deleted after a day."
  type        = number
  default     = 10
  nullable    = false

  validation {
    condition     = var.artifact_keep_count >= 1 && var.artifact_keep_count <= 100 && floor(var.artifact_keep_count) == var.artifact_keep_count
    error_message = "artifact_keep_count must be a whole number from 1 to 100."
  }
}

variable "artifact_repository_id" {
  description = "ID of the Artifact Registry Docker repository that holds both images (<region>-docker.pkg.dev/<project>/<id>/{rendezvous,worker})."
  type        = string
  default     = "holepunch"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.artifact_repository_id))
    error_message = "artifact_repository_id must be 1-63 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "auth_mode" {
  description = "AUTH_MODE of both services. \"iam\" (the default): the rendezvous is private, Cloud Run's front end checks each caller's Google ID token, and the worker's service account gets roles/run.invoker on it. \"token\": workers send the shared RENDEZVOUS_TOKEN from rendezvous_token_secret, which needs rendezvous_public = true (Cloud Run would otherwise reject the non-Google token). \"none\" is for development only and refused here."
  type        = string
  default     = "iam"
  nullable    = false

  validation {
    condition     = contains(["iam", "token"], var.auth_mode)
    error_message = "auth_mode must be \"iam\" or \"token\" (\"none\", no authentication, is for local development only and is not deployed to the cloud)."
  }
}

variable "build_trigger" {
  description = "Cloud Build trigger on push to a branch of a GitHub repository already connected to Cloud Build (1st gen). null (the default) creates no trigger."
  type = object({
    owner        = string
    repository   = string
    branch_regex = optional(string, "^main$")
  })
  default = null

  validation {
    condition     = var.build_trigger == null || try(length(var.build_trigger.owner) > 0 && length(var.build_trigger.repository) > 0, false)
    error_message = "build_trigger.owner and build_trigger.repository must both be set (or leave build_trigger null)."
  }
}

variable "debug_endpoints" {
  description = "DEBUG_ENDPOINTS of the rendezvous: serve /debug/list_workers and /debug/sessions (to holders of ADMIN_TOKEN only). Needs admin_token_secret. scripts/verify reads /debug/list_workers."
  type        = bool
  default     = false
  nullable    = false

  validation {
    condition     = !var.debug_endpoints || var.admin_token_secret != null
    error_message = "debug_endpoints = true needs admin_token_secret: without ADMIN_TOKEN the rendezvous refuses every /debug request."
  }
}

variable "deletion_protection" {
  description = "Cloud Run deletion protection on the rendezvous and the worker pool or service: while true, `terraform destroy` (or switching worker_host) cannot delete them (set false first, apply, then destroy)."
  type        = bool
  default     = true
  nullable    = false
}

variable "expected_workers" {
  description = "How many workers should be registered with the rendezvous; fewer opens the \"registered workers below expected\" alert. null (the default): worker_instance_count with the worker pool, worker_min_instances with the service."
  type        = number
  default     = null

  validation {
    condition     = var.expected_workers == null || try(var.expected_workers >= 0 && floor(var.expected_workers) == var.expected_workers, false)
    error_message = "expected_workers must be a whole number of 0 or more, or null."
  }
}

variable "introduction_policy" {
  description = "INTRODUCTION_POLICY of the rendezvous: which workers may be introduced to which, one rule a line over the tags workers declare (worker_tags). \"team-a\": team-a reaches team-a; \"team-a->gpu\": team-a may ask for gpu workers; \"team-a<->team-b\": both ways; \"*\" on a side: any worker, untagged ones included (\"*\" alone: everyone reaches everyone). Empty (the default): every introduction a worker asks for is refused (not_allowed); only the operator's /admin/introduce works. Workers may declare only the tags the rules name (any, when they name none)."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition = alltrue([
      for rule in var.introduction_policy :
      can(regex("^ *(\\*|[a-z0-9][a-z0-9_.-]{0,31}) *((<->|->) *(\\*|[a-z0-9][a-z0-9_.-]{0,31}) *)?$", rule))
    ]) && length(var.introduction_policy) <= 256
    error_message = "introduction_policy rules must each be \"tag\", \"tag->tag\" or \"tag<->tag\" (a tag: 1-32 of a-z 0-9 _ . -, starting with a letter or digit; or *), at most 256 rules."
  }
}

variable "labels" {
  description = "Labels added to every resource that supports them (provider default_labels)."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "log_level" {
  description = "LOG_LEVEL of both services."
  type        = string
  default     = "INFO"
  nullable    = false

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be one of DEBUG, INFO, WARNING, ERROR."
  }
}

variable "name_prefix" {
  description = "Prefix of the names of the network, router, NAT, service accounts, bucket, log metrics and dashboard."
  type        = string
  default     = "holepunch"
  nullable    = false

  validation {
    # Service account IDs are "<prefix>-rendezvous" and must stay within 30 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{2,17}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 4-19 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "nat_logging" {
  description = "Cloud NAT logging: enable it, and which events to log (ERRORS_ONLY, TRANSLATIONS_ONLY or ALL)."
  type = object({
    enable = optional(bool, false)
    filter = optional(string, "ERRORS_ONLY")
  })
  default  = {}
  nullable = false

  validation {
    condition     = contains(["ERRORS_ONLY", "TRANSLATIONS_ONLY", "ALL"], var.nat_logging.filter)
    error_message = "nat_logging.filter must be ERRORS_ONLY, TRANSLATIONS_ONLY or ALL."
  }
}

variable "nat_min_ports_per_vm" {
  description = "Cloud NAT ports reserved per instance (static allocation; dynamic allocation is off because it excludes endpoint-independent mapping)."
  type        = number
  default     = 64
  nullable    = false

  validation {
    condition     = var.nat_min_ports_per_vm >= 2 && var.nat_min_ports_per_vm <= 65536 && floor(var.nat_min_ports_per_vm) == var.nat_min_ports_per_vm
    error_message = "nat_min_ports_per_vm must be a whole number from 2 to 65536."
  }
}

variable "nat_static_ip_count" {
  description = "Number of reserved static external IPs for Cloud NAT (MANUAL_ONLY), so peers and allow-lists see stable addresses. 0 lets Google allocate them (AUTO_ONLY)."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.nat_static_ip_count >= 0 && var.nat_static_ip_count <= 16 && floor(var.nat_static_ip_count) == var.nat_static_ip_count
    error_message = "nat_static_ip_count must be a whole number from 0 to 16."
  }
}

variable "nat_udp_idle_timeout_sec" {
  description = "Seconds an idle UDP mapping lives in Cloud NAT (API default 30). Workers must refresh their mapping (STUN) more often than this."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = var.nat_udp_idle_timeout_sec >= 10 && var.nat_udp_idle_timeout_sec <= 3600 && floor(var.nat_udp_idle_timeout_sec) == var.nat_udp_idle_timeout_sec
    error_message = "nat_udp_idle_timeout_sec must be a whole number of seconds from 10 to 3600."
  }
}

variable "placeholder_image" {
  description = "Public image both services start from on the first apply, before Cloud Build has pushed ours. It answers 200 on every path, so the startup probes pass. Later applies ignore the image (Cloud Build owns it)."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
  nullable    = false
}

variable "project_id" {
  description = "ID of the Google Cloud project to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lowercase letters, digits or hyphens, starting with a letter), not a project name or number."
  }
}

variable "region" {
  description = "Region of the Cloud Run services, subnet, router, NAT and Artifact Registry repository."
  type        = string
  default     = "us-central1"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region name such as us-central1 or europe-west4 (not a zone such as us-central1-a)."
  }
}

variable "rendezvous_concurrency" {
  description = "Maximum concurrent requests per rendezvous instance; every registered worker holds one WebSocket request open."
  type        = number
  default     = 1000
  nullable    = false

  validation {
    condition     = var.rendezvous_concurrency >= 1 && var.rendezvous_concurrency <= 1000 && floor(var.rendezvous_concurrency) == var.rendezvous_concurrency
    error_message = "rendezvous_concurrency must be a whole number from 1 to 1000 (the Cloud Run limit)."
  }
}

variable "rendezvous_invokers" {
  description = "Principals granted roles/run.invoker on the rendezvous besides the worker, e.g. [\"group:holepunch-ops@example.com\"]: operators who call /healthz, /debug/* or /admin/* with their ID token in X-Serverless-Authorization. Project owners, editors and Cloud Run admins can invoke it already."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for m in var.rendezvous_invokers : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):.+$", m))])
    error_message = "rendezvous_invokers must be IAM members such as user:a@example.com, group:ops@example.com or serviceAccount:x@p.iam.gserviceaccount.com; allUsers and allAuthenticatedUsers are not accepted (see rendezvous_public)."
  }
}

variable "rendezvous_limits" {
  description = "Rendezvous limits, passed as its environment: messages per second per connection (MAX_MESSAGES_PER_SEC), concurrent WebSockets per client address (MAX_CONNECTIONS_PER_ADDRESS: every worker behind our Cloud NAT shares its few addresses, so keep it well above the worker count), the relay budget per punch session (RELAY_DATAGRAMS_PER_SEC, RELAY_BYTES_PER_SEC) and per initiating worker (INITIATOR_RELAY_DATAGRAMS_PER_SEC, INITIATOR_RELAY_BYTES_PER_SEC), concurrent punch sessions per worker (MAX_SESSIONS_PER_WORKER), and introductions per target worker per minute (INTRODUCTIONS_PER_TARGET_PER_MIN)."
  type = object({
    max_messages_per_sec        = optional(number, 50)
    max_connections_per_address = optional(number, 1000)
    relay_datagrams_per_sec     = optional(number, 100)
    relay_bytes_per_sec         = optional(number, 65536)
    # Caps and budgets (README "Caps and budgets").
    initiator_relay_datagrams_per_sec = optional(number, 200)
    initiator_relay_bytes_per_sec     = optional(number, 131072)
    max_sessions_per_worker           = optional(number, 32)
    introductions_per_target_per_min  = optional(number, 20)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.rendezvous_limits.max_messages_per_sec >= 1 && var.rendezvous_limits.max_messages_per_sec <= 100000
    error_message = "rendezvous_limits.max_messages_per_sec must be from 1 to 100000."
  }

  validation {
    condition     = var.rendezvous_limits.max_connections_per_address >= 1 && var.rendezvous_limits.max_connections_per_address <= 1000000 && floor(var.rendezvous_limits.max_connections_per_address) == var.rendezvous_limits.max_connections_per_address
    error_message = "rendezvous_limits.max_connections_per_address must be a whole number from 1 to 1000000."
  }

  validation {
    condition     = var.rendezvous_limits.relay_datagrams_per_sec >= 1 && var.rendezvous_limits.relay_datagrams_per_sec <= 1000000
    error_message = "rendezvous_limits.relay_datagrams_per_sec must be from 1 to 1000000."
  }

  validation {
    condition     = var.rendezvous_limits.relay_bytes_per_sec >= 1200 && var.rendezvous_limits.relay_bytes_per_sec <= 1000000000
    error_message = "rendezvous_limits.relay_bytes_per_sec must be from 1200 (one relayed datagram) to 1000000000."
  }

  validation {
    condition     = var.rendezvous_limits.initiator_relay_datagrams_per_sec >= 1 && var.rendezvous_limits.initiator_relay_datagrams_per_sec <= 1000000
    error_message = "rendezvous_limits.initiator_relay_datagrams_per_sec must be from 1 to 1000000."
  }

  validation {
    condition     = var.rendezvous_limits.initiator_relay_bytes_per_sec >= 1200 && var.rendezvous_limits.initiator_relay_bytes_per_sec <= 1000000000
    error_message = "rendezvous_limits.initiator_relay_bytes_per_sec must be from 1200 (one relayed datagram) to 1000000000."
  }

  validation {
    condition     = var.rendezvous_limits.max_sessions_per_worker >= 1 && var.rendezvous_limits.max_sessions_per_worker <= 100000 && floor(var.rendezvous_limits.max_sessions_per_worker) == var.rendezvous_limits.max_sessions_per_worker
    error_message = "rendezvous_limits.max_sessions_per_worker must be a whole number from 1 to 100000."
  }

  validation {
    condition     = var.rendezvous_limits.introductions_per_target_per_min >= 1 && var.rendezvous_limits.introductions_per_target_per_min <= 1000000
    error_message = "rendezvous_limits.introductions_per_target_per_min must be from 1 to 1000000."
  }
}

variable "rendezvous_max_instances" {
  description = "Maximum rendezvous instances, per revision and (service-level scaling) over all revisions together, a rollout included. Without shared_registry the worker registry lives in one process's memory, so it must stay 1; with shared_registry.enabled every instance shares the registry in Redis and this may be raised."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.rendezvous_max_instances >= 1 && var.rendezvous_max_instances <= 100 && floor(var.rendezvous_max_instances) == var.rendezvous_max_instances
    error_message = "rendezvous_max_instances must be a whole number from 1 to 100."
  }

  validation {
    condition     = var.rendezvous_max_instances == 1 || var.shared_registry.enabled
    error_message = "rendezvous_max_instances above 1 needs the shared registry: set shared_registry = { enabled = true } (Memorystore for Redis), or keep rendezvous_max_instances = 1, since each instance's in-memory registry would hold only the workers connected to it."
  }
}

variable "rendezvous_min_instances" {
  description = "Minimum rendezvous instances (at least 1: workers hold WebSockets to it and its registry lives in memory)."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.rendezvous_min_instances >= 1 && var.rendezvous_min_instances <= 100 && floor(var.rendezvous_min_instances) == var.rendezvous_min_instances
    error_message = "rendezvous_min_instances must be a whole number from 1 to 100."
  }

  validation {
    condition     = var.rendezvous_min_instances <= var.rendezvous_max_instances
    error_message = "rendezvous_min_instances must not exceed rendezvous_max_instances."
  }
}

variable "rendezvous_public" {
  description = "Make the rendezvous public: Cloud Run checks no invoker IAM on it (invoker_iam_disabled, not an allUsers binding, which domain-restricted sharing refuses), so anyone on the internet reaches it and Cloud Run checks no Google identity. Default false. Only with auth_mode = \"token\", where the shared RENDEZVOUS_TOKEN gates workers: with auth_mode = \"iam\" a public service would let any caller past IAM and claim any identity, so that combination is refused."
  type        = bool
  default     = false
  nullable    = false

  validation {
    condition     = var.rendezvous_public == (var.auth_mode == "token")
    error_message = "rendezvous_public must be true exactly when auth_mode = \"token\": with \"iam\" a public rendezvous lets anyone past Cloud Run's IAM check (and forge the identity the rendezvous reads); with \"token\" a private one rejects the workers, whose shared token is not a Google ID token."
  }
}

variable "rendezvous_resources" {
  description = "CPU and memory limits of a rendezvous instance."
  type = object({
    cpu    = optional(string, "1")
    memory = optional(string, "512Mi")
  })
  default  = {}
  nullable = false
}

variable "rendezvous_service_name" {
  description = "Name of the rendezvous Cloud Run service."
  type        = string
  default     = "rendezvous"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.rendezvous_service_name))
    error_message = "rendezvous_service_name must be 1-49 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "rendezvous_subnet_cidr" {
  description = "Primary range of the rendezvous's own subnet, made only with the shared registry (the rendezvous then reaches Memorystore through Direct VPC egress). It is kept out of Cloud NAT's list, as Google advises for a subnet that carries private-ranges egress only. /26 or larger, not overlapping subnet_cidr."
  type        = string
  default     = "10.8.1.0/26"
  nullable    = false

  validation {
    condition     = can(cidrhost(var.rendezvous_subnet_cidr, 0)) && try(tonumber(split("/", var.rendezvous_subnet_cidr)[1]) <= 26, false)
    error_message = "rendezvous_subnet_cidr must be an IPv4 CIDR range of /26 or larger, such as 10.8.1.0/26."
  }

  validation {
    # Two ranges overlap when they share their network address at the shorter prefix.
    condition = !can(cidrhost(var.rendezvous_subnet_cidr, 0)) || !can(cidrhost(var.subnet_cidr, 0)) || (
      cidrhost("${split("/", var.rendezvous_subnet_cidr)[0]}/${min(tonumber(split("/", var.rendezvous_subnet_cidr)[1]), tonumber(split("/", var.subnet_cidr)[1]))}", 0) !=
      cidrhost("${split("/", var.subnet_cidr)[0]}/${min(tonumber(split("/", var.rendezvous_subnet_cidr)[1]), tonumber(split("/", var.subnet_cidr)[1]))}", 0)
    )
    error_message = "rendezvous_subnet_cidr must not overlap subnet_cidr (the workers' subnet)."
  }
}

variable "rendezvous_token_secret" {
  description = "Secret Manager secret (in this project) holding RENDEZVOUS_TOKEN, the shared token of auth_mode = \"token\" (at least 16 characters); both services read it, from Secret Manager, and only their service accounts can. Required with auth_mode = \"token\", unused (and refused) with \"iam\"."
  type = object({
    secret  = string
    version = optional(string, "latest")
  })
  default = null

  validation {
    condition = var.rendezvous_token_secret == null || try(
      can(regex("^[A-Za-z0-9_-]{1,255}$", var.rendezvous_token_secret.secret)) && can(regex("^(latest|[1-9][0-9]*|[A-Za-z][A-Za-z0-9_-]{0,62})$", var.rendezvous_token_secret.version)),
      false,
    )
    error_message = "rendezvous_token_secret.secret must be a secret ID in this project (letters, digits, - and _), and its version \"latest\", a version number or an alias."
  }

  validation {
    condition     = (var.auth_mode == "token") == (var.rendezvous_token_secret != null)
    error_message = "rendezvous_token_secret is required with auth_mode = \"token\" and used only then (leave it null with \"iam\")."
  }
}

variable "shared_registry" {
  description = "Shared worker registry in Memorystore for Redis, so that several rendezvous instances see every worker. enabled (default false: in-memory registry, one instance); tier BASIC (default, no replica: a failure or maintenance empties it and instances republish their workers) or STANDARD_HA (replica with automatic failover); memory_size_gb (1-300); redis_version (REDIS_7_2 by default); reserved_ip_range (a /29 in the VPC for the instance, null lets Memorystore pick an unused one); ttl_sec, the rendezvous's REGISTRY_TTL_SEC (3-3600): how long an entry outlives the last heartbeat of its instance."
  type = object({
    enabled           = optional(bool, false)
    tier              = optional(string, "BASIC")
    memory_size_gb    = optional(number, 1)
    redis_version     = optional(string, "REDIS_7_2")
    reserved_ip_range = optional(string)
    ttl_sec           = optional(number, 15)
  })
  default  = {}
  nullable = false

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.shared_registry.tier)
    error_message = "shared_registry.tier must be BASIC or STANDARD_HA."
  }

  validation {
    condition     = var.shared_registry.memory_size_gb >= 1 && var.shared_registry.memory_size_gb <= 300 && floor(var.shared_registry.memory_size_gb) == var.shared_registry.memory_size_gb
    error_message = "shared_registry.memory_size_gb must be a whole number of GB from 1 to 300."
  }

  validation {
    condition     = can(regex("^REDIS_[0-9]+_[0-9X]+$", var.shared_registry.redis_version))
    error_message = "shared_registry.redis_version must be a Memorystore version name such as REDIS_7_2 or REDIS_6_X."
  }

  validation {
    condition     = var.shared_registry.reserved_ip_range == null || try(can(cidrhost(var.shared_registry.reserved_ip_range, 0)) && tonumber(split("/", var.shared_registry.reserved_ip_range)[1]) == 29, false)
    error_message = "shared_registry.reserved_ip_range must be an IPv4 /29 range that overlaps no subnet of the VPC (such as 10.9.0.0/29), or null to let Memorystore pick one."
  }

  validation {
    condition     = var.shared_registry.ttl_sec >= 3 && var.shared_registry.ttl_sec <= 3600
    error_message = "shared_registry.ttl_sec must be from 3 to 3600 seconds (the rendezvous's REGISTRY_TTL_SEC range)."
  }
}

variable "stun_refresh_sec" {
  description = "STUN_REFRESH_SEC of the worker: how often it refreshes its NAT mapping. Must be below nat_udp_idle_timeout_sec."
  type        = number
  default     = 20
  nullable    = false

  validation {
    condition     = var.stun_refresh_sec >= 1 && var.stun_refresh_sec <= 3600
    error_message = "stun_refresh_sec must be from 1 to 3600 seconds."
  }

  validation {
    condition     = var.stun_refresh_sec < var.nat_udp_idle_timeout_sec
    error_message = "stun_refresh_sec must be below nat_udp_idle_timeout_sec, or Cloud NAT drops the worker's UDP mapping between refreshes."
  }
}

variable "stun_servers" {
  description = "STUN servers (host:port) the worker queries, passed as the comma-separated STUN_SERVERS."
  type        = list(string)
  default     = ["stun.l.google.com:19302", "stun1.l.google.com:19302"]
  nullable    = false

  validation {
    condition = length(var.stun_servers) > 0 && alltrue([
      for s in var.stun_servers :
      can(regex("^[A-Za-z0-9.-]+:[0-9]{1,5}$", s)) && try(tonumber(split(":", s)[1]) >= 1 && tonumber(split(":", s)[1]) <= 65535, false)
    ])
    error_message = "stun_servers must list at least one host:port, with a port from 1 to 65535."
  }
}

variable "subnet_cidr" {
  description = "Primary range of the subnet the worker's Direct VPC egress uses (Cloud Run takes addresses in blocks of 16; /26 or larger)."
  type        = string
  default     = "10.8.0.0/24"
  nullable    = false

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && try(tonumber(split("/", var.subnet_cidr)[1]) <= 26, false)
    error_message = "subnet_cidr must be an IPv4 CIDR range of /26 or larger, such as 10.8.0.0/24."
  }
}

variable "trusted_proxy_cidrs" {
  description = "Addresses the rendezvous trusts for X-Forwarded-For (its TRUSTED_PROXIES): the Cloud Run front end."
  type        = list(string)
  default     = ["169.254.0.0/16"]
  nullable    = false

  validation {
    condition     = alltrue([for c in var.trusted_proxy_cidrs : can(cidrhost(c, 0))])
    error_message = "trusted_proxy_cidrs must be CIDR ranges; do not use \"*\", which lets clients forge their address."
  }
}

variable "worker_data_plane" {
  description = "The worker's data plane settings (README, data plane): expose_ports, TCP ports on its loopback peers may open streams to (EXPOSE_PORTS; app_containers ports are added); expose_udp_ports, UDP ports a peer's UDP forward may reach (EXPOSE_UDP_PORTS); socks_listen, a loopback host:port for the SOCKS5 proxy whose host <worker_id>.holepunch is that peer (SOCKS_LISTEN, null: off); tcp_forwards and udp_forwards, \"127.0.0.1:9000=worker-b:8000\" entries (TCP_FORWARDS, UDP_FORWARDS). Each is set in the worker's env only when given."
  type = object({
    expose_ports     = optional(list(number), [])
    expose_udp_ports = optional(list(number), [])
    socks_listen     = optional(string)
    tcp_forwards     = optional(list(string), [])
    udp_forwards     = optional(list(string), [])
  })
  default  = {}
  nullable = false

  validation {
    condition = alltrue([
      for port in concat(var.worker_data_plane.expose_ports, var.worker_data_plane.expose_udp_ports) : port >= 1 && port <= 65535 && floor(port) == port
    ])
    error_message = "worker_data_plane.expose_ports and expose_udp_ports must be whole numbers from 1 to 65535."
  }

  validation {
    # 8080 is the worker's own HTTP server (/status, /readyz): peers must not reach it.
    condition     = !contains(var.worker_data_plane.expose_ports, 8080)
    error_message = "worker_data_plane.expose_ports must not include 8080, the worker's own HTTP port (its status and API are for the instance's containers only)."
  }

  validation {
    condition = var.worker_data_plane.socks_listen == null || try(
      can(regex("^(127\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|\\[::1\\]):[0-9]{1,5}$", var.worker_data_plane.socks_listen)) &&
      tonumber(regex("[0-9]+$", var.worker_data_plane.socks_listen)) >= 1 && tonumber(regex("[0-9]+$", var.worker_data_plane.socks_listen)) <= 65535,
      false,
    )
    error_message = "worker_data_plane.socks_listen must be a loopback host:port such as 127.0.0.1:1080 or [::1]:1080 (only the containers of the instance may use the proxy)."
  }

  validation {
    condition = alltrue([
      for forward in concat(var.worker_data_plane.tcp_forwards, var.worker_data_plane.udp_forwards) :
      can(regex("^(127\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|\\[::1\\]):[0-9]{1,5}=[A-Za-z0-9][A-Za-z0-9._-]{0,63}:[0-9]{1,5}$", forward))
    ])
    error_message = "worker_data_plane.tcp_forwards and udp_forwards entries must be listen=peer:port with a loopback listener, such as 127.0.0.1:9000=worker-b:8000."
  }

  validation {
    # TCP listeners on the shared loopback: the SOCKS proxy and the TCP forwards each need
    # an address of their own, and a port that neither the worker's HTTP server (8080, on
    # every address) nor an application (app_containers ports) listens on.
    condition = try(
      length(distinct(concat(
        var.worker_data_plane.socks_listen == null ? [] : [var.worker_data_plane.socks_listen],
        [for forward in var.worker_data_plane.tcp_forwards : split("=", forward)[0]],
        ))) == (var.worker_data_plane.socks_listen == null ? 0 : 1) + length(var.worker_data_plane.tcp_forwards) && alltrue([
        for listen in concat(
          var.worker_data_plane.socks_listen == null ? [] : [var.worker_data_plane.socks_listen],
          [for forward in var.worker_data_plane.tcp_forwards : split("=", forward)[0]],
        ) : !contains(concat(["8080"], [for port in flatten(var.app_containers[*].ports) : tostring(port)]), regex("[0-9]+$", listen))
      ]),
      true,
    )
    error_message = "worker_data_plane: the SOCKS proxy and each TCP forward need a loopback address of their own, on a port other than 8080 (the worker's HTTP port) and the app_containers ports (the instance's containers share one loopback)."
  }
}

variable "worker_host" {
  description = "What runs the workers: \"worker_pool\" (the default: a Cloud Run worker pool, worker_instance_count long-lived instances, no ingress, no autoscaling) or \"service\" (a Cloud Run service with internal ingress, worker_min_instances to worker_max_instances instances, for projects that need its HTTP endpoint). Switching replaces the workers (set deletion_protection = false first)."
  type        = string
  default     = "worker_pool"
  nullable    = false

  validation {
    condition     = contains(["worker_pool", "service"], var.worker_host)
    error_message = "worker_host must be \"worker_pool\" or \"service\"."
  }
}

variable "worker_instance_count" {
  description = "Instances of the worker pool (worker_host = \"worker_pool\"): Cloud Run keeps exactly this many running, each a worker with its own id. 0 stops them. Unused with the service (worker_min_instances, worker_max_instances)."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.worker_instance_count >= 0 && var.worker_instance_count <= 1000 && floor(var.worker_instance_count) == var.worker_instance_count
    error_message = "worker_instance_count must be a whole number from 0 to 1000."
  }
}

variable "worker_max_instances" {
  description = "Maximum worker instances with worker_host = \"service\" (unused with the worker pool: worker_instance_count)."
  type        = number
  default     = 2
  nullable    = false

  validation {
    condition     = var.worker_max_instances >= 1 && var.worker_max_instances <= 100 && floor(var.worker_max_instances) == var.worker_max_instances
    error_message = "worker_max_instances must be a whole number from 1 to 100."
  }
}

variable "worker_min_instances" {
  description = "Minimum worker instances with worker_host = \"service\"; a worker works in the background (WebSocket, STUN refresh), so at least 1 (unused with the worker pool: worker_instance_count)."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.worker_min_instances >= 1 && var.worker_min_instances <= 100 && floor(var.worker_min_instances) == var.worker_min_instances
    error_message = "worker_min_instances must be a whole number from 1 to 100."
  }

  validation {
    condition     = var.worker_min_instances <= var.worker_max_instances
    error_message = "worker_min_instances must not exceed worker_max_instances."
  }
}

variable "worker_resources" {
  description = "CPU and memory limits of a worker instance (CPU is always allocated)."
  type = object({
    cpu    = optional(string, "1")
    memory = optional(string, "512Mi")
  })
  default  = {}
  nullable = false
}

variable "worker_service_name" {
  description = "Name of the worker's Cloud Run worker pool, or service with worker_host = \"service\"."
  type        = string
  default     = "worker"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.worker_service_name))
    error_message = "worker_service_name must be 1-49 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "worker_tags" {
  description = "WORKER_TAGS of the worker: the tags it declares at registration, which introduction_policy's rules name. Empty (the default): untagged."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition = length(var.worker_tags) <= 16 && alltrue([
      for tag in var.worker_tags : can(regex("^[a-z0-9][a-z0-9_.-]{0,31}$", tag))
    ])
    error_message = "worker_tags must be at most 16 tags of 1-32 of a-z 0-9 _ . - (starting with a letter or digit)."
  }

  validation {
    condition = alltrue([
      for tag in var.worker_tags : contains(flatten([
        for rule in var.introduction_policy : [for side in split("->", replace(rule, "<->", "->")) : trimspace(side)]
      ]), tag)
    ]) || alltrue([for rule in var.introduction_policy : length(regexall("[a-z0-9]", rule)) == 0])
    error_message = "worker_tags must all be named in introduction_policy, or the rendezvous refuses the worker (tag_not_allowed)."
  }
}
