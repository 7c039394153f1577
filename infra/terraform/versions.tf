# Terraform and provider versions, the provider's defaults, and the remote state backend.
terraform {
  # 1.9: variable validations may refer to other variables (auth_mode, rendezvous_public, secrets).
  required_version = ">= 1.9"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 8"
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
