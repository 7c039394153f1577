# Cloud Build: the source staging bucket for `scripts/deploy` and an optional trigger on push to a GitHub branch.
locals {
  # cloudbuild.yaml's substitutions, filled from this configuration so both always agree.
  build_substitutions = {
    _REGION             = var.region
    _REPOSITORY         = var.artifact_repository_id
    _RENDEZVOUS_SERVICE = var.rendezvous_service_name
    _WORKER_SERVICE     = var.worker_service_name
    _WORKER_HOST        = var.worker_host
  }
  build_source_staging_dir = "gs://${google_storage_bucket.build_source.name}/source"
}

# `gcloud builds submit` uploads the source here; the build account reads it, nothing else does.
resource "google_storage_bucket" "build_source" {
  # checkov:skip=CKV_GCP_62: access logs of a bucket that holds only short-lived source tarballs add cost and no audit value (Data Access audit logs can be enabled project-wide instead).
  # checkov:skip=CKV_GCP_78: versioning is pointless for uploads deleted after a week; every build has its own object.
  name                        = "${var.project_id}-${var.name_prefix}-build"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis["storage.googleapis.com"]]
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.build_source.name
  role   = "roles/storage.objectViewer"
  member = local.build_member
}

# Off unless var.build_trigger names a GitHub repository already connected to Cloud Build.
resource "google_cloudbuild_trigger" "push" {
  count = var.build_trigger == null ? 0 : 1

  name            = "${var.name_prefix}-push"
  description     = "Test, build and deploy holepunch on push to ${var.build_trigger.branch_regex}."
  filename        = "cloudbuild.yaml"
  service_account = google_service_account.build.id
  substitutions   = local.build_substitutions

  github {
    owner = var.build_trigger.owner
    name  = var.build_trigger.repository
    push {
      branch = var.build_trigger.branch_regex
    }
  }

  depends_on = [google_project_service.apis["cloudbuild.googleapis.com"]]
}
