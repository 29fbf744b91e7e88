//! `pipeline cache clear [--component NAME]`: forgets cached step results.

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{print, print_json};

/// Removes cache entries (of one component, or all) and says how many.
pub fn clear(ctx: &Ctx, component: Option<&str>) -> Result<(), CliError> {
    // No store: nothing was ever cached, and nothing needs creating to say so.
    let removed = match ctx.writable_store()? {
        Some(store) => store.clear_cache(component)?,
        None => 0,
    };
    if ctx.json {
        return print_json(&serde_json::json!({"removed": removed, "component": component}));
    }
    let entries = if removed == 1 { "entry" } else { "entries" };
    let scope = component.map_or_else(String::new, |c| format!(" of component `{c}`"));
    print(&format!("removed {removed} cache {entries}{scope}\n"))
}
