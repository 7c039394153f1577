# What callers reference: the service's name, location and URL.
output "id" {
  description = "ID of the service (projects/<project>/locations/<region>/services/<name>)."
  value       = google_cloud_run_v2_service.service.id
}

output "location" {
  description = "Region of the service."
  value       = google_cloud_run_v2_service.service.location
}

output "name" {
  description = "Name of the service."
  value       = google_cloud_run_v2_service.service.name
}

output "uri" {
  description = "HTTPS URL of the service."
  value       = google_cloud_run_v2_service.service.uri
}
