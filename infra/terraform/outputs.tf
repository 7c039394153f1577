# Outputs: where things are, and the commands to deploy, verify and read logs.
locals {
  deploy_substitutions = join(",", [for k, v in local.build_substitutions : "${k}=${v}"])
}

output "alert_policies" {
  description = "Names of the Cloud Monitoring alert policies (Monitoring > Alerting), by alert; docs/alerts.md says what each means and what to run first."
  value = merge(
    {
      rendezvous_unavailable = google_monitoring_alert_policy.rendezvous_unavailable.name
      nat_failures           = google_monitoring_alert_policy.nat_failures.name
      worker_restarts        = google_monitoring_alert_policy.worker_restarts.name
    },
    { for name, policy in google_monitoring_alert_policy.punch_share : name => policy.name },
    { for policy in google_monitoring_alert_policy.workers_below_expected : "workers_below_expected" => policy.name },
  )
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
  description = "Builds, tests and deploys the rendezvous and the worker (service or worker pool) from the repository root (what scripts/deploy runs)."
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
    rendezvous = "gcloud logging read '${local.resource_filters.rendezvous}' --project=${var.project_id} --freshness=1h --limit=50"
    worker     = "gcloud logging read '${local.resource_filters.worker}' --project=${var.project_id} --freshness=1h --limit=50"
    saved      = "${local.logs_command} list"
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
  # /debug/list_workers needs DEBUG_ENDPOINTS and an ADMIN_TOKEN: skipped when they are off.
  value = join(" ", concat(
    ["scripts/verify --project=${var.project_id} --region=${var.region} --url=${module.rendezvous.uri}"],
    ["--rendezvous-service=${var.rendezvous_service_name} --worker-service=${var.worker_service_name} --worker-host=${var.worker_host}"],
    var.debug_endpoints ? [] : ["--skip-debug"],
  ))
}

output "worker_host" {
  description = "What runs the workers: \"worker_pool\" or \"service\" (worker_host)."
  value       = var.worker_host
}

output "worker_service_name" {
  description = "Name of the worker's Cloud Run worker pool, or service with worker_host = \"service\"."
  value       = local.worker_on_pool ? module.worker_pool[0].name : module.worker[0].name
}
