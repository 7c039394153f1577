# Provider range of the module: the same as the root's (versions.tf there).
terraform {
  required_version = ">= 1.9"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.10, < 9"
    }
  }
}
