//! The `render-deploy` command-line program: a thin shell over the library.

fn main() -> std::process::ExitCode {
    render_deploy::cli::main()
}
