# Outputs: where things are, and the commands to deploy, verify and read logs.
locals {
  deploy_substitutions = join(",", [for k, v in local.build_substitutions : "${k}=${v}"])
}

output "build_service_account" {
  description = "Resource name of the Cloud Build deployer account (for `gcloud builds submit --service-account`)."
  value       = google_service_account.build.id
}

output "build_source_staging_dir" {
  description = "Where `gcloud builds submit` uploads the source (readable by the build account only)."
  value       = local.build_source_staging_dir
}

output "cloudbuild_substitutions" {
  description = "The --substitutions that make cloudbuild.yaml match this configuration (scripts/deploy adds COMMIT_SHA)."
  value       = local.deploy_substitutions
}

output "dashboard_id" {
  description = "ID of the Cloud Monitoring dashboard (Monitoring > Dashboards)."
  value       = google_monitoring_dashboard.holepunch.id
}

output "deploy_command" {
  description = "Builds, tests and deploys both services from the repository root (what scripts/deploy runs)."
  value       = "gcloud builds submit --project=${var.project_id} --region=${var.region} --config=cloudbuild.yaml --service-account=${google_service_account.build.id} --gcs-source-staging-dir=${local.build_source_staging_dir} --substitutions=COMMIT_SHA=$(git rev-parse HEAD),${local.deploy_substitutions} ."
}

output "image_repository" {
  description = "Artifact Registry path of the images: <repository>/rendezvous and <repository>/worker."
  value       = local.image_repository
}

output "images" {
  description = "Image paths (without tag) of each service."
  value       = local.images
}

output "log_metrics" {
  description = "Names of the log-based metrics (logging.googleapis.com/user/<name>)."
  value       = [for m in google_logging_metric.events : m.name]
}

output "logs_commands" {
  description = "Commands that read the services' logs."
  value = {
    rendezvous = "gcloud logging read 'resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.rendezvous_service_name}\"' --project=${var.project_id} --freshness=1h --limit=50"
    worker     = "gcloud logging read 'resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.worker_service_name}\"' --project=${var.project_id} --freshness=1h --limit=50"
    saved      = "scripts/logs --project=${var.project_id} list"
  }
}

output "nat_ips" {
  description = "Reserved Cloud NAT addresses (empty when nat_static_ip_count is 0: Google then picks them, and workers learn them through STUN)."
  value       = google_compute_address.nat[*].address
}

output "project_id" {
  description = "Project the stack is deployed in."
  value       = var.project_id
}

output "region" {
  description = "Region of the services, network and repository."
  value       = var.region
}

output "rendezvous_service_name" {
  description = "Name of the rendezvous Cloud Run service."
  value       = module.rendezvous.name
}

output "rendezvous_url" {
  description = "HTTPS URL of the rendezvous (workers connect to wss://<host>/ws/register/<worker_id>)."
  value       = module.rendezvous.uri
}

output "shared_registry" {
  description = "The shared registry: Memorystore instance name, host, port and tier, and the Secret Manager secret holding REGISTRY_URL (read it to reach Redis: it contains the auth string). null when shared_registry.enabled is false."
  value = local.registry_enabled ? {
    instance   = google_redis_instance.registry[0].name
    host       = google_redis_instance.registry[0].host
    port       = google_redis_instance.registry[0].port
    tier       = google_redis_instance.registry[0].tier
    url_secret = google_secret_manager_secret.registry_url[0].secret_id
  } : null
}

output "verify_command" {
  description = "Runs the deployment checklist against the live services."
  value       = "scripts/verify --project=${var.project_id} --region=${var.region} --url=${module.rendezvous.uri}"
}

output "worker_service_name" {
  description = "Name of the worker Cloud Run service."
  value       = module.worker.name
}
