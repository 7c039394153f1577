# Input variables, alphabetical; each one typed and described.
variable "containers" {
  description = "The service's containers by name (primary_container, else the first in name order, is the one whose image Cloud Build deploys; the others are sidecars sharing its loopback): the image to start from, optional command and args, the port Cloud Run sends requests to (the ingress container only), CPU and memory, plain env, env read from Secret Manager ({ secret, version } per variable), the containers it starts after (depends_on: they need a startup probe), and optional HTTP startup and liveness probes (port: null probes the container's own port)."
  type = map(object({
    image      = string
    command    = optional(list(string))
    args       = optional(list(string))
    port       = optional(number)
    depends_on = optional(list(string), [])
    resources = object({
      cpu               = string
      memory            = string
      cpu_idle          = bool
      startup_cpu_boost = optional(bool, true)
    })
    env = optional(map(string), {})
    env_from_secrets = optional(map(object({
      secret  = string
      version = string
    })), {})
    startup_probe = optional(object({
      path              = string
      port              = optional(number)
      period_seconds    = number
      timeout_seconds   = number
      failure_threshold = number
    }))
    liveness_probe = optional(object({
      path              = string
      period_seconds    = number
      timeout_seconds   = number
      failure_threshold = number
    }))
  }))
  nullable = false

  validation {
    condition     = length(var.containers) >= 1
    error_message = "containers must hold at least one container."
  }

  validation {
    condition = alltrue([
      for c in var.containers : length(setintersection(keys(c.env), keys(c.env_from_secrets))) == 0
    ])
    error_message = "containers: a variable may be in env or in env_from_secrets, not in both."
  }

  validation {
    condition     = length([for c in var.containers : c if c.port != null]) == 1
    error_message = "containers: exactly one container (the ingress container) must have a port."
  }

  validation {
    condition = alltrue(flatten([
      for name, c in var.containers : [
        for other in c.depends_on : contains(keys(var.containers), other) && other != name && var.containers[other].startup_probe != null
      ]
    ]))
    error_message = "containers: depends_on must name other containers of the service, each with a startup probe (Cloud Run starts a container once those it depends on are ready)."
  }
}

variable "deletion_protection" {
  description = "While true, `terraform destroy` cannot delete the service."
  type        = bool
  default     = true
  nullable    = false
}

variable "description" {
  description = "Description of the service."
  type        = string
  default     = null
}

variable "ingress" {
  description = "Who may reach the service: INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  type        = string
  default     = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  nullable    = false

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "invoker_iam_disabled" {
  description = "true: Cloud Run checks no invoker IAM on requests (anyone reaches the service; the application authenticates callers). The recommended way to make a service public, instead of an allUsers invoker binding."
  type        = bool
  default     = false
  nullable    = false
}

variable "labels" {
  description = "Labels of the service, added to the provider's default_labels. null sets none of its own."
  type        = map(string)
  default     = null
}

variable "max_instance_count" {
  description = "Service-level cap on instances over all revisions together (a rollout included); null: none. The revision's own max_instance_count caps each revision."
  type        = number
  default     = null

  validation {
    condition     = var.max_instance_count == null || try(var.max_instance_count >= 1 && floor(var.max_instance_count) == var.max_instance_count, false)
    error_message = "max_instance_count must be a whole number of at least 1, or null."
  }
}

variable "name" {
  description = "Name of the Cloud Run service."
  type        = string
  nullable    = false
}

variable "primary_container" {
  description = "Name of the container whose image Cloud Build deploys: it is put first, and later applies ignore its image. null: the first container in name order."
  type        = string
  default     = null

  validation {
    condition     = var.primary_container == null || contains(keys(var.containers), coalesce(var.primary_container, "-"))
    error_message = "primary_container must name one of containers."
  }
}

variable "region" {
  description = "Region of the service."
  type        = string
  nullable    = false
}

variable "revision" {
  description = "Revision settings: instance counts, request timeout (null: Cloud Run's default), concurrent requests per instance (null: Cloud Run's default) and session affinity (null: off)."
  type = object({
    min_instance_count = number
    max_instance_count = number
    timeout            = optional(string)
    max_concurrency    = optional(number)
    session_affinity   = optional(bool)
  })
  nullable = false

  validation {
    condition     = var.revision.min_instance_count <= var.revision.max_instance_count
    error_message = "revision.min_instance_count must not exceed revision.max_instance_count."
  }
}

variable "service_account" {
  description = "Email of the service account the revisions run as."
  type        = string
  nullable    = false
}

variable "vpc_access" {
  description = "Direct VPC egress: which traffic leaves through the VPC (ALL_TRAFFIC or PRIVATE_RANGES_ONLY) and the network and subnetwork it uses. null: no VPC access."
  type = object({
    egress     = string
    network    = string
    subnetwork = string
  })
  default = null

  validation {
    condition     = var.vpc_access == null || try(contains(["ALL_TRAFFIC", "PRIVATE_RANGES_ONLY"], var.vpc_access.egress), false)
    error_message = "vpc_access.egress must be ALL_TRAFFIC or PRIVATE_RANGES_ONLY."
  }
}
