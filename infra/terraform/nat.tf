# Cloud NAT for the workers' subnet: endpoint-independent mapping, so one UDP socket keeps one public ip:port for every peer.
resource "google_compute_address" "nat" {
  count = var.nat_static_ip_count

  name         = "${var.name_prefix}-nat-${count.index}"
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
  description  = "Reserved Cloud NAT address of the holepunch workers."

  depends_on = [google_project_service.apis["compute.googleapis.com"]]

  lifecycle {
    # The NAT must be given the new addresses before the old ones can be released.
    create_before_destroy = true
  }
}

resource "google_compute_router_nat" "nat" {
  name   = "${var.name_prefix}-nat"
  router = google_compute_router.nat.name
  region = var.region

  nat_ip_allocate_option = local.nat_ip_allocate_option
  nat_ips                = var.nat_static_ip_count > 0 ? google_compute_address.nat[*].self_link : null

  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"
  subnetwork {
    name                    = google_compute_subnetwork.workers.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  # The API default is false since provider 5.0: hole punching needs the same public
  # ip:port for every destination, so it is set explicitly. Dynamic port allocation
  # cannot be combined with it, so it is off and ports are reserved statically.
  enable_endpoint_independent_mapping = true
  enable_dynamic_port_allocation      = false
  min_ports_per_vm                    = var.nat_min_ports_per_vm
  udp_idle_timeout_sec                = var.nat_udp_idle_timeout_sec

  log_config {
    enable = var.nat_logging.enable
    filter = var.nat_logging.filter
  }
}
