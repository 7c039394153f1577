# What callers reference: the worker pool's name and location.
output "id" {
  description = "ID of the worker pool (projects/<project>/locations/<region>/workerPools/<name>)."
  value       = google_cloud_run_v2_worker_pool.pool.id
}

output "location" {
  description = "Region of the worker pool."
  value       = google_cloud_run_v2_worker_pool.pool.location
}

output "name" {
  description = "Name of the worker pool."
  value       = google_cloud_run_v2_worker_pool.pool.name
}
