//! The chart's AutoscalingRunnerSet is exactly what the controller's Rust types read: for every
//! value set, the rendered spec deserializes into `k8s_reconcilers::crd::AutoscalingRunnerSet`
//! and serializes back unchanged, so no field the chart writes is unknown to (and silently
//! dropped by) the controller.

use k8s_reconcilers::crd::AutoscalingRunnerSet;
use serde_json::Value;
use suites::helm::{self, Chart, Render};

/// JSON numbers compared by value: the chart writes `1`, a typed `f64` field writes `1.0`.
fn numbers_as_f64(value: Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Number(n)),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_f64(v)))
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn rendered_runner_sets_round_trip_through_the_crd_types() {
    for values in helm::scale_set_value_sets() {
        let r = Render::new(Chart::ScaleSet, "runners", "arc-runners")
            .values(values.clone())
            .render()
            .unwrap_or_else(|e| panic!("{values}: {e:#}"));
        let rendered = r.single("AutoscalingRunnerSet").expect("ars").clone();
        let typed: AutoscalingRunnerSet = serde_json::from_value(rendered.clone())
            .unwrap_or_else(|e| panic!("{values}: the chart's ARS does not parse: {e}"));
        let back = numbers_as_f64(serde_json::to_value(&typed).expect("serialize"));
        let rendered = numbers_as_f64(rendered);
        assert_eq!(back["spec"], rendered["spec"], "{values}");
        assert_eq!(back["metadata"]["labels"], rendered["metadata"]["labels"]);
        assert_eq!(
            back["metadata"]["annotations"],
            rendered["metadata"]["annotations"]
        );
    }
}
