//! Prints the generated OpenAPI document: `cargo run -p resource-server --example openapi`.

use utoipa::OpenApi;

fn main() -> Result<(), serde_json::Error> {
    println!(
        "{}",
        serde_json::to_string_pretty(&resource_server::openapi::ApiDoc::openapi())?
    );
    Ok(())
}
