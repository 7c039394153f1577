# Artifact Registry Docker repository for both images (paths in local.images, locals.tf), with cleanup policies that keep the most recent ones.

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: Google-managed encryption is enough for public-source images; a CMEK key would add a KMS dependency for no gain.
  location      = var.region
  repository_id = var.artifact_repository_id
  format        = "DOCKER"
  description   = "holepunch container images (rendezvous, worker), pushed by Cloud Build."

  cleanup_policy_dry_run = false

  # KEEP wins over DELETE: the newest versions of each image stay, the rest go after a day.
  cleanup_policies {
    id     = "keep-most-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.artifact_keep_count
    }
  }

  cleanup_policies {
    id     = "delete-older"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "86400s"
    }
  }

  depends_on = [google_project_service.apis["artifactregistry.googleapis.com"]]
}
