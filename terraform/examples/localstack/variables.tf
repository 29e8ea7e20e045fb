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
