# Input variables, alphabetical; each one typed and described.
variable "containers" {
  description = "The worker pool's containers by name (primary_container is the one whose image Cloud Build deploys; the others are sidecars sharing its network namespace, so loopback): the image to start from, optional command and args, CPU and memory, plain env, env read from Secret Manager ({ secret, version } per variable), the containers it starts after (depends_on: they need a startup probe), and an optional HTTP startup probe (a worker pool has no port of its own, so the probe names one)."
  type = map(object({
    image   = string
    command = optional(list(string))
    args    = optional(list(string))
    resources = object({
      cpu    = string
      memory = string
    })
    env = optional(map(string), {})
    env_from_secrets = optional(map(object({
      secret  = string
      version = string
    })), {})
    depends_on = optional(list(string), [])
    startup_probe = optional(object({
      path              = string
      port              = number
      period_seconds    = number
      timeout_seconds   = number
      failure_threshold = number
    }))
  }))
  nullable = false

  validation {
    condition     = length(var.containers) >= 1 && length(var.containers) <= 10
    error_message = "containers must hold from 1 to 10 containers (Cloud Run's limit)."
  }

  validation {
    condition = alltrue([
      for c in var.containers : length(setintersection(keys(c.env), keys(c.env_from_secrets))) == 0
    ])
    error_message = "containers: a variable may be in env or in env_from_secrets, not in both."
  }

  validation {
    condition = alltrue(flatten([
      for name, c in var.containers : [
        for other in c.depends_on : contains(keys(var.containers), other) && other != name && var.containers[other].startup_probe != null
      ]
    ]))
    error_message = "containers: depends_on must name other containers of the pool, each with a startup probe (Cloud Run starts a container once those it depends on are ready)."
  }
}

variable "deletion_protection" {
  description = "While true, `terraform destroy` cannot delete the worker pool."
  type        = bool
  default     = true
  nullable    = false
}

variable "description" {
  description = "Description of the worker pool."
  type        = string
  default     = null
}

variable "instance_count" {
  description = "How many instances the pool runs (manual scaling: Cloud Run keeps exactly this many, replacing any that stops). 0 stops them all."
  type        = number
  nullable    = false

  validation {
    condition     = var.instance_count >= 0 && var.instance_count <= 1000 && floor(var.instance_count) == var.instance_count
    error_message = "instance_count must be a whole number from 0 to 1000."
  }
}

variable "labels" {
  description = "Labels of the worker pool, added to the provider's default_labels. null sets none of its own."
  type        = map(string)
  default     = null
}

variable "name" {
  description = "Name of the Cloud Run worker pool."
  type        = string
  nullable    = false
}

variable "primary_container" {
  description = "Name of the container whose image Cloud Build deploys (`gcloud run worker-pools update --container`): it is put first, and later applies ignore its image."
  type        = string
  nullable    = false

  validation {
    condition     = contains(keys(var.containers), var.primary_container)
    error_message = "primary_container must name one of containers."
  }
}

variable "region" {
  description = "Region of the worker pool."
  type        = string
  nullable    = false
}

variable "service_account" {
  description = "Email of the service account the instances run as."
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
