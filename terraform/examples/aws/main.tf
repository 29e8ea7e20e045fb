# The stack on real AWS with the module's production defaults (validated in tests,
# never applied by them). Credentials come from the standard AWS chain.

terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "stack_name" {
  description = "The stack's name."
  type        = string
  default     = "gateway"
}

variable "user_data" {
  description = "The nodes' cloud-config (e.g. rendered by the provisioner)."
  type        = string
}

provider "aws" {
  region = var.region
}

module "gateway" {
  source = "../.."

  stack_name = var.stack_name
  user_data  = var.user_data
}

output "stack" {
  description = "The module's outputs (no secrets)."
  value       = module.gateway
}
