# Terraform and provider versions, the provider's defaults, and the remote state backend.
terraform {
  # 1.9: variable validations may refer to other variables (auth_mode, rendezvous_public, secrets).
  required_version = ">= 1.9"

  # 7.10: worker-pool probes (7.5) and container depends_on (7.10), the service-level
  # scaling cap (7.0). 8.x changes nothing used here. The lock file cannot be made offline:
  # commit .terraform.lock.hcl after the first `terraform init`.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.10, < 9"
    }
  }

  # Partial configuration: `scripts/bootstrap` creates the bucket and prints the
  # `terraform init -backend-config=bucket=...` command to run once.
  backend "gcs" {
    prefix = "holepunch/terraform"
  }
}

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = var.labels
}
