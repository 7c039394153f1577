# Cloud Run v2: the rendezvous service (private under IAM), and the workers, on a worker pool or a service, whose UDP leaves through Cloud NAT.
#
# Terraform owns the services and the pool; Cloud Build owns the rendezvous's and the
# worker's image. They are made by modules/cloud-run-service and
# modules/cloud-run-worker-pool and start from var.placeholder_image, so the first apply
# works before any image of ours exists; the modules ignore that image on later applies.

module "rendezvous" {
  source = "./modules/cloud-run-service"

  name                = var.rendezvous_service_name
  region              = var.region
  description         = "holepunch rendezvous: workers register over WebSocket and report their public UDP endpoints."
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  service_account     = google_service_account.rendezvous.email
  revision            = local.rendezvous_revision
  # The revision's cap alone lets a rollout run an old and a new instance side by side,
  # each with half the in-memory registry: this one caps all revisions together.
  max_instance_count = var.rendezvous_max_instances
  # Public only with auth_mode = "token" (variables.tf refuses it with "iam"): then the
  # shared RENDEZVOUS_TOKEN, not Cloud Run's IAM check, gates the workers. No allUsers
  # binding, which the domain-restricted-sharing org policy refuses.
  invoker_iam_disabled = var.rendezvous_public
  containers = {
    rendezvous = merge(local.rendezvous_container, {
      env_from_secrets = merge(local.rendezvous_secret_env, local.registry_secret_env)
    })
  }
  # Shared registry only: Direct VPC egress into its own subnet (outside Cloud NAT's
  # list, network.tf) for private ranges only, so
  # the rendezvous reaches Memorystore's private IP while everything else (its
  # answers, Google APIs) leaves as before. Ingress is unchanged.
  vpc_access = local.registry_enabled ? {
    egress     = "PRIVATE_RANGES_ONLY"
    network    = google_compute_network.vpc.id
    subnetwork = google_compute_subnetwork.rendezvous[0].id
  } : null

  # A revision whose env reads a secret fails to deploy until its account may read it.
  depends_on = [
    google_project_service.apis["run.googleapis.com"],
    google_secret_manager_secret_iam_member.runtime_accessor,
    google_secret_manager_secret_iam_member.registry_url_accessor,
  ]
}

# The worker on a Cloud Run service (worker_host = "service"), with the application's sidecars.
module "worker" {
  source = "./modules/cloud-run-service"
  count  = local.worker_on_pool ? 0 : 1

  name                = var.worker_service_name
  region              = var.region
  description         = "holepunch worker: holds a UDP socket, learns its public endpoint through STUN and registers it with the rendezvous."
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  service_account     = google_service_account.worker.email
  revision            = local.worker_revision
  primary_container   = "worker"
  containers = merge(local.app_service_containers, {
    worker = merge(local.worker_container, {
      env              = merge(local.worker_env, { RENDEZVOUS_SERVICE_URL = module.rendezvous.uri })
      env_from_secrets = local.worker_secret_env
    })
  })
  # Direct VPC egress for all traffic: the worker's UDP leaves through our Cloud NAT
  # (endpoint-independent mapping), not through Cloud Run's shared egress.
  vpc_access = {
    egress     = "ALL_TRAFFIC"
    network    = google_compute_network.vpc.id
    subnetwork = google_compute_subnetwork.workers.id
  }

  # The NAT must exist before the worker's first STUN request leaves the subnet, and
  # its account must be able to read its secrets before the revision can deploy.
  depends_on = [
    google_project_service.apis["run.googleapis.com"],
    google_compute_router_nat.nat,
    google_secret_manager_secret_iam_member.runtime_accessor,
  ]
}

# The worker on a Cloud Run worker pool (worker_host = "worker_pool", the default): a fixed
# number of long-lived instances, no ingress, the same egress, env and sidecars.
module "worker_pool" {
  source = "./modules/cloud-run-worker-pool"
  count  = local.worker_on_pool ? 1 : 0

  name                = var.worker_service_name
  region              = var.region
  description         = "holepunch workers: each holds a UDP socket, learns its public endpoint through STUN and registers it with the rendezvous."
  deletion_protection = var.deletion_protection
  service_account     = google_service_account.worker.email
  instance_count      = var.worker_instance_count
  primary_container   = "worker"
  containers = merge(local.app_containers, {
    worker = merge(local.worker_pool_container, {
      env              = merge(local.worker_env, { RENDEZVOUS_SERVICE_URL = module.rendezvous.uri })
      env_from_secrets = local.worker_secret_env
    })
  })
  vpc_access = {
    egress     = "ALL_TRAFFIC"
    network    = google_compute_network.vpc.id
    subnetwork = google_compute_subnetwork.workers.id
  }

  depends_on = [
    google_project_service.apis["run.googleapis.com"],
    google_compute_router_nat.nat,
    google_secret_manager_secret_iam_member.runtime_accessor,
  ]
}

# The services were root resources before modules/cloud-run-service: these keep an existing
# deployment's services (and their URLs) instead of destroying and re-creating them.
moved {
  from = google_cloud_run_v2_service.rendezvous
  to   = module.rendezvous.google_cloud_run_v2_service.service
}

moved {
  from = google_cloud_run_v2_service.worker
  to   = module.worker[0].google_cloud_run_v2_service.service
}

# module.worker gained a count with worker_host: the existing service is its instance 0.
moved {
  from = module.worker
  to   = module.worker[0]
}

# auth_mode = "iam": the worker's own identity is what lets it through Cloud Run's front end.
resource "google_cloud_run_v2_service_iam_member" "worker_invoker" {
  count = var.auth_mode == "iam" ? 1 : 0

  location = module.rendezvous.location
  name     = module.rendezvous.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.worker.email}"
}

# Operators (and anything else listed) who call the private rendezvous with their ID token.
resource "google_cloud_run_v2_service_iam_member" "operator_invokers" {
  for_each = toset(var.rendezvous_invokers)

  location = module.rendezvous.location
  name     = module.rendezvous.name
  role     = "roles/run.invoker"
  member   = each.value
}
