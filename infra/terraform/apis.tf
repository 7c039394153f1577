# Google APIs the stack uses; every resource that needs one depends on it.
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

resource "google_project_service" "apis" {
  for_each = local.apis

  project = var.project_id
  service = each.value

  # Turning an API off on destroy would break anything else in the project that uses it.
  disable_on_destroy         = false
  disable_dependent_services = false
}
