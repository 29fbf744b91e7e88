//! Two components in different modules under one name: the binary builds (the modules are
//! separate namespaces) but no pipeline starts, and the error names both functions.

use pipeline_runtime::prelude::*;
use pipeline_runtime::{PipelineError, registry};

mod first {
    use pipeline_runtime::prelude::*;

    #[component(name = "normalize")]
    pub fn scale_down(x: f64) -> f64 {
        x / 10.0
    }
}

mod second {
    use pipeline_runtime::prelude::*;

    #[component]
    pub fn normalize(x: f64) -> f64 {
        x / 100.0
    }
}

#[pipeline(name = "clash", project = "tests")]
fn clash() -> f64 {
    first::scale_down(1.0).get().unwrap() + second::normalize(1.0).get().unwrap()
}

#[test]
fn duplicate_names_across_modules_stop_every_pipeline_with_both_paths() {
    debug_pipeline();
    let expected = "two components are registered under the name `normalize`: \
                    `duplicate_names::first::scale_down` and `duplicate_names::second::normalize`";
    assert_eq!(
        registry::validate().unwrap_err().to_string(),
        format!("{expected}; give one of them another `name = \"...\"`")
    );
    let err = clash::run().unwrap_err();
    assert!(matches!(err, PipelineError::DuplicateComponent(_)));
    assert!(err.to_string().starts_with(expected), "{err}");
    assert!(registry::find_component("normalize").is_err());
}
