# Optional shared worker registry: Memorystore for Redis, reached by the rendezvous through Direct VPC egress.
#
# Off by default (var.shared_registry.enabled = false): the rendezvous keeps its registry
# in memory and runs on one instance. When on, every rendezvous instance reads and
# writes the same registry in Redis, so rendezvous_max_instances may exceed 1.
#
# Decisions (docs/infra.md, Shared registry):
# - connect_mode = DIRECT_PEERING (the API default): Memorystore creates its own VPC
#   peering with our VPC when the instance is created, so no servicenetworking API,
#   allocated range or google_service_networking_connection (and none of its
#   permissions or its delete-time failures) for one instance in a VPC of our own.
#   PRIVATE_SERVICE_ACCESS pays off with a Shared VPC or several managed services
#   sharing one range, neither of which we have.
# - AUTH on: the worker's Direct VPC egress sends ALL_TRAFFIC into the same VPC, so
#   without AUTH any code in a worker container could rewrite the registry. The auth
#   string reaches the rendezvous inside REGISTRY_URL, kept in a Secret Manager secret
#   that only the rendezvous's account can read, so it is not in the service's
#   configuration (which run.viewer and the build account can read).
# - No transit encryption (TLS): see the checkov skip below.
locals {
  # REGISTRY_URL from Secret Manager, pinned to the version Terraform wrote: a new
  # instance (new host or auth string) makes a new version, which rolls the rendezvous.
  registry_secret_env = local.registry_enabled ? {
    REGISTRY_URL = {
      secret  = google_secret_manager_secret.registry_url[0].secret_id
      version = google_secret_manager_secret_version.registry_url[0].version
    }
  } : {}
}

resource "google_redis_instance" "registry" {
  # checkov:skip=CKV_GCP_97: no in-transit TLS: traffic stays on the private peering between our VPC and Memorystore, AUTH gates access, and TLS would need the instance's CA mounted in the container and rotated, which the rendezvous does not support yet (docs/infra.md, Shared registry).
  count = local.registry_count

  name           = "${var.name_prefix}-registry"
  display_name   = "holepunch shared worker registry"
  region         = var.region
  tier           = var.shared_registry.tier
  memory_size_gb = var.shared_registry.memory_size_gb
  redis_version  = var.shared_registry.redis_version

  authorized_network = google_compute_network.vpc.id
  connect_mode       = "DIRECT_PEERING"
  # null: Memorystore picks an unused /29 that overlaps no subnet of the VPC.
  reserved_ip_range = var.shared_registry.reserved_ip_range

  auth_enabled            = true
  transit_encryption_mode = "DISABLED"

  depends_on = [google_project_service.apis["redis.googleapis.com"]]
}

# The whole URL is the secret: the rendezvous reads only REGISTRY_URL. The auth string
# is in the Terraform state already (google_redis_instance exports it), so keeping
# this version's value there too exposes nothing new; protect the state bucket.
resource "google_secret_manager_secret" "registry_url" {
  count = local.registry_count

  secret_id = "${var.name_prefix}-registry-url"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis["secretmanager.googleapis.com"]]
}

resource "google_secret_manager_secret_version" "registry_url" {
  count = local.registry_count

  secret      = google_secret_manager_secret.registry_url[0].id
  secret_data = "redis://:${urlencode(google_redis_instance.registry[0].auth_string)}@${google_redis_instance.registry[0].host}:${google_redis_instance.registry[0].port}/0"
}

# Only the rendezvous reads it (the worker never talks to Redis).
resource "google_secret_manager_secret_iam_member" "registry_url_accessor" {
  count = local.registry_count

  project   = var.project_id
  secret_id = google_secret_manager_secret.registry_url[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.rendezvous.email}"
}
