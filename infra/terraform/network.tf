# VPC with custom subnets only: the workers' subnet (Cloud NAT), the rendezvous's own with the shared registry, and the Cloud Router.
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

# The rendezvous's Direct VPC egress (shared registry only: it then reaches Memorystore's
# private address). Its own subnet, not the workers': Cloud NAT serves only the workers'
# (nat.tf lists it alone), as Google advises for private-ranges-only egress. Made only
# with the shared registry: without it the rendezvous has no VPC access at all, and an
# unused range would only be one more to keep free.
resource "google_compute_subnetwork" "rendezvous" {
  # checkov:skip=CKV_GCP_26: VPC flow logs are off to save cost; the rendezvous's only VPC traffic is to Memorystore.
  # checkov:skip=CKV_GCP_76: IPv6 is not used: Memorystore is reached over its private IPv4 address.
  count = local.registry_count

  name                     = "${var.name_prefix}-rendezvous"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.rendezvous_subnet_cidr
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
