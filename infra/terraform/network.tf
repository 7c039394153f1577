# VPC with custom subnets only, the one regional subnet the worker's Direct VPC egress uses, and its Cloud Router.
resource "google_compute_network" "vpc" {
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.apis["compute.googleapis.com"]]
}

resource "google_compute_subnetwork" "workers" {
  # checkov:skip=CKV_GCP_26: VPC flow logs are off to save cost; NAT logging (var.nat_logging) shows the translations that matter.
  # checkov:skip=CKV_GCP_76: IPv6 is not used: Cloud NAT translates IPv4 and the workers' STUN servers are reached over IPv4.
  name                     = "${var.name_prefix}-workers"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
}

resource "google_compute_router" "nat" {
  name    = "${var.name_prefix}-router"
  region  = var.region
  network = google_compute_network.vpc.id
}

# Nothing may connect in: the workers receive UDP only as answers through Cloud NAT,
# and Cloud Run serves HTTP through its own front end. Written out rather than implied.
resource "google_compute_firewall" "deny_ingress" {
  name      = "${var.name_prefix}-deny-all-ingress"
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]
}
