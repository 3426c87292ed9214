//! The README documents what the code does: its table reference is exactly `healthetl schema`'s output, and its
//! two set-up commands are the scripts CI runs.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_readme_table_reference_is_generated_from_the_schema() {
    let readme = read("README.md");
    let begin = "<!-- schema:begin -->\n";
    let end = "<!-- schema:end -->";
    let start = readme
        .find(begin)
        .expect("README has the schema:begin marker")
        + begin.len();
    let stop = readme.find(end).expect("README has the schema:end marker");
    assert_eq!(
        &readme[start..stop],
        healthetl::schema::SCHEMA.markdown(),
        "README's table reference is stale: regenerate it with `healthetl schema`"
    );
}

#[test]
fn the_readme_views_reference_is_generated_from_the_view_declarations() {
    let readme = read("README.md");
    let begin = "<!-- views:begin -->\n";
    let start = readme
        .find(begin)
        .expect("README has the views:begin marker")
        + begin.len();
    let stop = readme
        .find("<!-- views:end -->")
        .expect("README has the views:end marker");
    assert_eq!(
        &readme[start..stop],
        healthetl::reporting::markdown(),
        "README's views reference is stale: regenerate it with `healthetl schema --views`"
    );
}

#[test]
fn the_readme_commands_are_the_ones_ci_runs() {
    let readme = read("README.md");
    assert!(
        readme.contains("scripts/demo"),
        "README names the main-job command"
    );
    assert!(
        readme.contains("scripts/test"),
        "README names the test command"
    );
    let ci = read(".ci/run");
    assert!(
        ci.contains("scripts/test"),
        ".ci/run calls the README's test command"
    );
}

#[test]
fn the_readme_defines_the_dashboard_figures_as_the_page_footer_does() {
    let readme = read("README.md");
    for (term, definition) in healthetl::dashboard::html::DEFINITIONS {
        assert!(
            readme.contains(&format!("- **{term}**: {definition}")),
            "README lacks the definition of {term}"
        );
    }
}
