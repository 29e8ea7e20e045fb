output "stack" {
  description = "The module's outputs (no secrets)."
  value       = module.gateway
}
