variable "stack_name" {
  description = "The stack's name: prefixes every resource name and is the value of the gateway-kit:stack tag. 1-20 lower-case letters, digits and single dashes, starting with a letter."
  type        = string
  validation {
    condition     = length(var.stack_name) <= 20 && can(regex("^[a-z]([a-z0-9]*(-[a-z0-9]+)*)?$", var.stack_name))
    error_message = "stack_name: use 1-20 lower-case letters, digits and single dashes, starting with a letter and not ending with a dash."
  }
}

variable "tags" {
  description = "Extra tags for every resource (Name and gateway-kit:stack are always set)."
  type        = map(string)
  default     = {}
}

# --- network -------------------------------------------------------------------

variable "vpc_cidr" {
  description = "The VPC's CIDR (/16 to /24), split into 16 subnets: public i is block i, private i is block 8 + i."
  type        = string
  default     = "10.0.0.0/16"
  validation {
    condition = (
      can(cidrsubnet(var.vpc_cidr, 0, 0)) && try(cidrsubnet(var.vpc_cidr, 0, 0) == var.vpc_cidr, false) &&
      try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 24, false)
    )
    error_message = "vpc_cidr: an IPv4 CIDR with the host bits zero and a /16 to /24 prefix, e.g. 10.0.0.0/16."
  }
}

variable "az_count" {
  description = "How many AZs to spread over (2 to 6; fewer if the region has fewer)."
  type        = number
  default     = 3
  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6 && floor(var.az_count) == var.az_count
    error_message = "az_count: 2 to 6 (Multi-AZ RDS and the ELB need 2; the VPC is split into 16 subnets)."
  }
}

variable "nat" {
  description = "NAT gateways: \"per_az\" (one per AZ) or \"single\" (one for the VPC, cheaper, one AZ's failure cuts egress)."
  type        = string
  default     = "per_az"
  validation {
    condition     = contains(["per_az", "single"], var.nat)
    error_message = "nat: \"per_az\" or \"single\"."
  }
}

variable "allowed_cidrs" {
  description = "Who may reach the ELB listeners (80, 443)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrsubnet(c, 0, 0)) && try(cidrsubnet(c, 0, 0) == c, false)])
    error_message = "allowed_cidrs: at least one IPv4 CIDR with the host bits zero, e.g. \"0.0.0.0/0\"."
  }
}

# --- database ------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m5.large"
  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class: an RDS class such as db.m5.large."
  }
}

variable "db_allocated_storage" {
  description = "RDS storage in GiB (gp3)."
  type        = number
  default     = 100
  validation {
    condition     = var.db_allocated_storage >= 20 && var.db_allocated_storage <= 65536
    error_message = "db_allocated_storage: 20 to 65536 GiB."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL version for RDS (a major version such as \"15\", or \"15.4\")."
  type        = string
  default     = "15"
  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?$", var.db_engine_version))
    error_message = "db_engine_version: \"15\" or \"15.4\"."
  }
}

variable "backup_retention_days" {
  description = "RDS automated backup retention in days (1 to 35; 0 would turn backups off)."
  type        = number
  default     = 7
  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days: 1 to 35."
  }
}

variable "deletion_protection" {
  description = "RDS deletion protection. Turn it off (and apply) before destroying the stack."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Destroy the database without the final snapshot <stack>-db-final."
  type        = bool
  default     = false
}

variable "apply_immediately" {
  description = "Apply RDS changes now instead of in the next maintenance window."
  type        = bool
  default     = false
}

# --- secrets -------------------------------------------------------------------

variable "secret_store" {
  description = "Where the generated DB master password and Admin API token live: \"ssm\" (SecureString) or \"secrets_manager\". Names: /<stack>/db/master-password, /<stack>/gateway/admin-token."
  type        = string
  default     = "ssm"
  validation {
    condition     = contains(["ssm", "secrets_manager"], var.secret_store)
    error_message = "secret_store: \"ssm\" or \"secrets_manager\"."
  }
}

variable "secrets_version" {
  description = "Bump to generate new secrets and set the new DB password (write-only attributes are only sent when this changes)."
  type        = number
  default     = 1
  validation {
    condition     = var.secrets_version >= 1 && floor(var.secrets_version) == var.secrets_version
    error_message = "secrets_version: a whole number from 1."
  }
}

variable "secret_recovery_window_days" {
  description = "Secrets Manager only: days a deleted secret can be restored (0 deletes at once, 7 to 30)."
  type        = number
  default     = 30
  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days: 0 or 7 to 30."
  }
}

# --- artifacts -----------------------------------------------------------------

variable "artifacts_force_destroy" {
  description = "Let destroy delete the artifact bucket with the binaries in it."
  type        = bool
  default     = false
}

# --- compute -------------------------------------------------------------------

variable "instance_type" {
  description = "EC2 instance type of the gateway nodes."
  type        = string
  default     = "c5.2xlarge"
  validation {
    condition     = can(regex("^[a-z0-9-]+\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type: an EC2 type such as c5.2xlarge."
  }
}

variable "ami_id" {
  description = "AMI of the nodes; null: Amazon Linux 2023 from /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64."
  type        = string
  default     = null
  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id: an AMI id such as ami-0123456789abcdef0, or null."
  }
}

variable "root_volume_size" {
  description = "Root volume size in GiB (encrypted gp3); at least the AMI's snapshot size."
  type        = number
  default     = 20
  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 16384
    error_message = "root_volume_size: 8 to 16384 GiB."
  }
}

variable "user_data" {
  description = "The nodes' user data (cloud-config), e.g. what the provisioner renders. Must not contain secrets: nodes read them with their instance role. The default only marks the node."
  type        = string
  default     = "#cloud-config\n# gateway node: pass the real cloud-config in var.user_data\n"
  validation {
    condition     = length(var.user_data) <= 16384
    error_message = "user_data: at most 16 KiB."
  }
}

variable "min_size" {
  description = "Auto Scaling group minimum (at least 1)."
  type        = number
  default     = 2
  validation {
    condition     = var.min_size >= 1
    error_message = "min_size: at least 1 node."
  }
}

variable "max_size" {
  description = "Auto Scaling group maximum."
  type        = number
  default     = 6
  validation {
    condition     = var.max_size >= var.min_size
    error_message = "max_size: at least min_size."
  }
}

variable "desired_capacity" {
  description = "Auto Scaling group desired capacity (min_size <= desired_capacity <= max_size)."
  type        = number
  default     = 2
  validation {
    condition     = var.desired_capacity >= var.min_size && var.desired_capacity <= var.max_size
    error_message = "min_size <= desired_capacity <= max_size must hold."
  }
}

variable "health_check_grace_period" {
  description = "Seconds after launch before the ELB health check counts."
  type        = number
  default     = 300
  validation {
    condition     = var.health_check_grace_period >= 0
    error_message = "health_check_grace_period: 0 or more seconds."
  }
}

variable "termination_drain_seconds" {
  description = "Seconds a terminating node gets to drain (the lifecycle hook's heartbeat, 30 to 7200)."
  type        = number
  default     = 300
  validation {
    condition     = var.termination_drain_seconds >= 30 && var.termination_drain_seconds <= 7200
    error_message = "termination_drain_seconds: 30 to 7200."
  }
}

variable "wait_for_capacity_timeout" {
  description = "How long apply waits for min_size healthy nodes (\"0\" does not wait)."
  type        = string
  default     = "10m"
  validation {
    condition     = can(regex("^[0-9]+[smh]?$", var.wait_for_capacity_timeout))
    error_message = "wait_for_capacity_timeout: a duration such as \"10m\", or \"0\"."
  }
}

# --- balancer and DNS ------------------------------------------------------------

variable "connection_draining_timeout" {
  description = "Seconds the ELB keeps draining a deregistered node (1 to 3600)."
  type        = number
  default     = 30
  validation {
    condition     = var.connection_draining_timeout >= 1 && var.connection_draining_timeout <= 3600
    error_message = "connection_draining_timeout: 1 to 3600."
  }
}

variable "domain" {
  description = "DNS name for the ELB (an alias A record); needs hosted_zone_id."
  type        = string
  default     = null
  validation {
    condition     = var.domain == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain))
    error_message = "domain: a lower-case DNS name such as api.example.com."
  }
}

variable "hosted_zone_id" {
  description = "Route53 hosted zone of domain."
  type        = string
  default     = null
  validation {
    condition     = (var.domain == null) == (var.hosted_zone_id == null)
    error_message = "domain and hosted_zone_id go together: give both or neither."
  }
  validation {
    condition     = var.hosted_zone_id == null || can(regex("^[A-Z0-9]{1,32}$", var.hosted_zone_id))
    error_message = "hosted_zone_id: a Route53 hosted zone id such as Z0123456789ABCDEFGHIJ, without \"/hostedzone/\"."
  }
}
