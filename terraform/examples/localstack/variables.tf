variable "endpoint" {
  description = "The kit's endpoint, as localstack/start prints it."
  type        = string
  default     = "http://127.0.0.1:4566"
  validation {
    condition     = can(regex("^https?://", var.endpoint))
    error_message = "endpoint: a URL such as http://127.0.0.1:4566."
  }
}

variable "region" {
  description = "AWS region to emulate."
  type        = string
  default     = "us-east-1"
}

variable "stack_name" {
  description = "The stack's name (see the module)."
  type        = string
  default     = "gateway"
}

variable "az_count" {
  description = "AZs to spread over."
  type        = number
  default     = 3
}

variable "nat" {
  description = "\"per_az\" or \"single\"."
  type        = string
  default     = "per_az"
}

variable "deletion_protection" {
  description = "RDS deletion protection. Off on the kit so destroy works; the parity test turns it on, as the module's default and the provisioner have it, and lifts it before destroy."
  type        = bool
  default     = false
}
