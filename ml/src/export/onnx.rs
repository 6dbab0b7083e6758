//! ONNX export: the trained network as an ONNX graph (IR version 9, opset
//! 17), written directly in protobuf wire format.
//!
//! Input `input`: float32 `[N, ...sample shape]` (MNIST: `[N, 1, 28, 28]`,
//! pixels in [0, 1]). Output `logits`: float32 `[N, classes]`. Tabular
//! models start with `(input - mean) / std` so raw feature values go in.

use super::protobuf::Message;
use crate::MlError;
use crate::data::FeatureScaling;
use crate::model::Architecture;
use crate::params::{NamedTensor, Params};

const IR_VERSION: i64 = 9;
const OPSET: i64 = 17;
const FLOAT: i64 = 1;

struct Graph {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
    counter: usize,
}

fn attr_ints(name: &str, values: &[i64]) -> Message {
    let mut a = Message::default();
    a.string(1, name);
    for v in values {
        a.int(8, *v);
    }
    a.int(20, 7);
    a
}

fn attr_int(name: &str, value: i64) -> Message {
    let mut a = Message::default();
    a.string(1, name).int(3, value).int(20, 2);
    a
}

impl Graph {
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Message>) -> String {
        self.counter += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.counter);
        let mut n = Message::default();
        for i in inputs {
            n.string(1, i);
        }
        n.string(2, &output).string(3, &output).string(4, op);
        for a in &attrs {
            n.message(5, a);
        }
        self.nodes.push(n);
        output
    }

    fn constant(&mut self, name: &str, shape: &[usize], values: &[f32]) -> String {
        let mut t = Message::default();
        for d in shape {
            t.int(1, *d as i64);
        }
        t.int(2, FLOAT).string(8, name);
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.bytes(9, &raw);
        self.initializers.push(t);
        name.to_string()
    }

    fn weight(&mut self, t: &NamedTensor) -> String {
        self.constant(&t.name, &t.shape, &t.values)
    }
}

fn value_info(name: &str, dims: &[Result<i64, &str>]) -> Message {
    let mut shape = Message::default();
    for d in dims {
        let mut dim = Message::default();
        match d {
            Ok(v) => dim.int(1, *v),
            Err(p) => dim.string(2, p),
        };
        shape.message(1, &dim);
    }
    let mut tensor = Message::default();
    tensor.int(1, FLOAT).message(2, &shape);
    let mut ty = Message::default();
    ty.message(1, &tensor);
    let mut v = Message::default();
    v.string(1, name).message(2, &ty);
    v
}

/// Builds the ONNX model for trained `params` of `arch`.
pub fn to_onnx(
    arch: &Architecture,
    params: &Params,
    normalization: Option<&FeatureScaling>,
) -> Result<Vec<u8>, MlError> {
    let expected = arch.param_shapes();
    if expected.len() != params.tensors.len()
        || expected
            .iter()
            .zip(&params.tensors)
            .any(|((n, s), t)| *n != t.name || *s != t.shape)
    {
        return Err(MlError::Update(
            "weights do not match the architecture".into(),
        ));
    }
    let mut g = Graph {
        nodes: Vec::new(),
        initializers: Vec::new(),
        counter: 0,
    };
    let mut x = "input".to_string();
    if let Some(norm) = normalization {
        let mean = g.constant("normalization.mean", &[norm.mean.len()], &norm.mean);
        let std = g.constant("normalization.std", &[norm.std.len()], &norm.std);
        x = g.node("Sub", &[&x, &mean], vec![]);
        x = g.node("Div", &[&x, &std], vec![]);
    }
    let by_name: std::collections::HashMap<&str, &NamedTensor> = params
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let layer = |name: String| -> Result<(&NamedTensor, &NamedTensor), MlError> {
        let get = |suffix: &str| {
            by_name
                .get(format!("{name}.{suffix}").as_str())
                .copied()
                .ok_or_else(|| MlError::Update(format!("missing weights {name}.{suffix}")))
        };
        Ok((get("weight")?, get("bias")?))
    };
    if let Some(k) = arch.kernel_size() {
        let pad = (k / 2) as i64;
        for i in 0..2 {
            let (w, b) = layer(format!("convs.{i}"))?;
            let (w, b) = (g.weight(w), g.weight(b));
            x = g.node(
                "Conv",
                &[&x, &w, &b],
                vec![
                    attr_ints("kernel_shape", &[k as i64, k as i64]),
                    attr_ints("pads", &[pad, pad, pad, pad]),
                ],
            );
            x = g.node("Relu", &[&x], vec![]);
            x = g.node(
                "MaxPool",
                &[&x],
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("strides", &[2, 2]),
                ],
            );
        }
    }
    if arch.input_shape.len() > 1 || arch.kernel_size().is_some() {
        x = g.node("Flatten", &[&x], vec![attr_int("axis", 1)]);
    }
    let dense = arch.dense_layers();
    for i in 0..dense {
        let (w, b) = layer(format!("dense.{i}"))?;
        let (w, b) = (g.weight(w), g.weight(b));
        x = g.node("MatMul", &[&x, &w], vec![]);
        x = g.node("Add", &[&x, &b], vec![]);
        if i + 1 < dense {
            x = g.node("Relu", &[&x], vec![]);
        }
    }
    // Name the last node's output `logits` with an Identity.
    let mut out = Message::default();
    out.string(1, &x)
        .string(2, "logits")
        .string(3, "logits")
        .string(4, "Identity");
    g.nodes.push(out);

    let mut graph = Message::default();
    for n in &g.nodes {
        graph.message(1, n);
    }
    graph.string(2, "oblivion");
    for t in &g.initializers {
        graph.message(5, t);
    }
    let mut input_dims = vec![Err("N")];
    input_dims.extend(arch.input_shape.iter().map(|d| Ok(*d as i64)));
    graph.message(11, &value_info("input", &input_dims));
    graph.message(
        12,
        &value_info("logits", &[Err("N"), Ok(arch.classes as i64)]),
    );

    let mut opset = Message::default();
    opset.string(1, "").int(2, OPSET);
    let mut model = Message::default();
    model
        .int(1, IR_VERSION)
        .string(2, "oblivion")
        .string(3, env!("CARGO_PKG_VERSION"))
        .message(7, &graph)
        .message(8, &opset);
    Ok(model.0)
}
