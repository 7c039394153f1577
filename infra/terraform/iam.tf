# One service account per service and one for Cloud Build, each with only the roles it needs.
#
# The runtime accounts get no project roles: both services log JSON to stdout, which
# Cloud Run collects itself. The worker may invoke the rendezvous (auth_mode = "iam",
# run.tf), and each account may read only the secrets its service's env names (token
# mode, admin token). The Cloud Build account can read the build
# source, push images to our repository, write build logs, update our services and
# worker pool and act as their runtime accounts; nothing more.
resource "google_service_account" "rendezvous" {
  account_id   = "${var.name_prefix}-rendezvous"
  display_name = "holepunch rendezvous (Cloud Run runtime)"

  depends_on = [google_project_service.apis["iam.googleapis.com"]]
}

resource "google_service_account" "worker" {
  account_id   = "${var.name_prefix}-worker"
  display_name = "holepunch worker (Cloud Run runtime)"

  depends_on = [google_project_service.apis["iam.googleapis.com"]]
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "holepunch Cloud Build deployer"

  depends_on = [google_project_service.apis["iam.googleapis.com"]]
}

locals {
  runtime_service_accounts = {
    rendezvous = google_service_account.rendezvous.name
    worker     = google_service_account.worker.name
  }
  # The Cloud Run services Cloud Build deploys to; a worker pool has its own grant below.
  services = merge(
    { rendezvous = module.rendezvous.name },
    local.worker_on_pool ? {} : { worker = module.worker[0].name },
  )
  build_member = "serviceAccount:${google_service_account.build.email}"

  # One secretAccessor grant per (service, secret env var), on that secret only.
  secret_accessors = merge([
    for service, env in { rendezvous = local.rendezvous_secret_env, worker = local.worker_secret_env } : {
      for name, ref in env : "${service}/${name}" => {
        secret = ref.secret
        member = "serviceAccount:${service == "rendezvous" ? google_service_account.rendezvous.email : google_service_account.worker.email}"
      }
    }
  ]...)
}

# Cloud Run reads RENDEZVOUS_TOKEN and ADMIN_TOKEN from Secret Manager as the service's
# own account when an instance starts; the secrets themselves are created outside
# Terraform, so their values never enter the state (docs/infra.md, token mode).
resource "google_secret_manager_secret_iam_member" "runtime_accessor" {
  for_each = local.secret_accessors

  project   = var.project_id
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member

  depends_on = [google_project_service.apis["secretmanager.googleapis.com"]]
}

# A build run as a user-managed account writes its logs to Cloud Logging only.
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.build_member
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = local.build_member
}

# Deploy rights on our services and worker pool only (not project-wide).
resource "google_cloud_run_v2_service_iam_member" "build_developer" {
  for_each = local.services

  location = var.region
  name     = each.value
  role     = "roles/run.developer"
  member   = local.build_member
}

resource "google_cloud_run_v2_worker_pool_iam_member" "build_developer" {
  count = local.worker_on_pool ? 1 : 0

  location = module.worker_pool[0].location
  name     = module.worker_pool[0].name
  role     = "roles/run.developer"
  member   = local.build_member
}

# Deploying a revision that runs as a service account needs actAs on that account.
resource "google_service_account_iam_member" "build_act_as" {
  for_each = local.runtime_service_accounts

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = local.build_member
}
