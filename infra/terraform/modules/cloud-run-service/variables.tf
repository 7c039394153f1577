# Input variables, alphabetical; each one typed and described.
variable "containers" {
  description = "The service's containers by name (the first one in name order is the one whose image Cloud Build deploys): the image to start from, the port Cloud Run sends requests to, CPU and memory, plain env, env read from Secret Manager ({ secret, version } per variable), and optional HTTP startup and liveness probes."
  type = map(object({
    image = string
    port  = number
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

variable "labels" {
  description = "Labels of the service, added to the provider's default_labels. null sets none of its own."
  type        = map(string)
  default     = null
}

variable "name" {
  description = "Name of the Cloud Run service."
  type        = string
  nullable    = false
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
