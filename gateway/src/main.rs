// mimalloc: the request path allocates small, short-lived buffers; it costs
// less CPU per request than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
