//! The ONNX operators a model may use, and the graph they make in tract-core.
//!
//! The shipped models are linear (a clipped, centred projection and its residual), so a model
//! may use six ONNX operators and nothing else; a model using any other is refused at load with
//! the operator's name ([`check_operators`]). Each node is wired straight into a tract-core
//! [`TypedModel`] ([`typed_model`]): `Add`, `Sub`, `Mul` and `Clip` as tract's binary operators
//! (with numpy rank broadcasting), `MatMul` as an einsum, `ReduceSum` as tract's `Reduce`. Only
//! tract-core is linked: tract-onnx's parser registers every operator tract has and tract-nnef's
//! transforms reach all of them before `main`, about half of the agent's code for nothing.

use std::collections::HashMap;

use tract_core::internal::*;
use tract_core::ops::cast::cast;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math;
use tract_core::ops::nn::{Reduce, Reducer};

use crate::onnx::{self, data_type, GraphProto, NodeProto, TensorProto};

/// The operators a model may use (ONNX domain, opset 11 or later).
pub const SUPPORTED: &[&str] = &["Add", "Clip", "MatMul", "Mul", "ReduceSum", "Sub"];

/// The lowest operator set the loader understands (`Clip` takes its bounds as inputs).
pub const MIN_OPSET: i64 = 11;

/// The operators of `graph` outside [`SUPPORTED`], each named once, in graph order.
pub(crate) fn check_operators(graph: &GraphProto) -> Result<(), String> {
    let mut unsupported: Vec<&str> = Vec::new();
    for node in &graph.node {
        let op = node.op_type.as_str();
        let foreign_domain = !(node.domain.is_empty() || node.domain == "ai.onnx");
        if (foreign_domain || !SUPPORTED.contains(&op)) && !unsupported.contains(&op) {
            unsupported.push(op);
        }
    }
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the model uses operators the agent does not run: {} (supported: {})",
            unsupported.join(", "),
            SUPPORTED.join(", ")
        ))
    }
}

/// The tract-core graph of `proto` (whose operators [`check_operators`] accepted), importing
/// operator set `opset`: its sources are the graph inputs that are not initializers, its
/// outputs the graph outputs in order.
pub(crate) fn typed_model(proto: &onnx::ModelProto, opset: i64) -> TractResult<TypedModel> {
    let graph = proto.graph.as_ref().context("the file has no graph")?;
    ensure!(
        proto.functions.is_empty(),
        "the model defines local functions, which the loader does not run"
    );
    ensure!(
        graph.sparse_initializer.is_empty(),
        "the model has sparse initializers, which the loader does not read"
    );
    let initializers: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();

    let mut model = TypedModel::default();
    let mut wires: HashMap<String, OutletId> = HashMap::new();
    for input in &graph.input {
        if initializers.contains_key(input.name.as_str()) {
            continue;
        }
        let fact = source_fact(&model, input)?;
        let outlet = model.add_source(input.name.clone(), fact)?;
        wires.insert(input.name.clone(), outlet);
    }

    for node in &graph.node {
        let label = node.label();
        let mut inputs: Vec<Option<OutletId>> = Vec::with_capacity(node.input.len());
        for name in &node.input {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            let outlet = match (wires.get(name), initializers.get(name.as_str())) {
                (Some(outlet), _) => *outlet,
                (None, Some(t)) => {
                    let value = tensor(t).with_context(|| format!("initializer {name}"))?;
                    let outlet = model.add_const(name.clone(), value)?;
                    wires.insert(name.clone(), outlet);
                    outlet
                }
                (None, None) => bail!("node {label} reads {name}, which nothing before it defines"),
            };
            inputs.push(Some(outlet));
        }
        let output = wire(&mut model, node, opset, &inputs)
            .with_context(|| format!("node {label} ({})", node.op_type))?;
        let name = node
            .output
            .first()
            .with_context(|| format!("node {label} has no output"))?;
        ensure!(
            node.output.len() == 1,
            "node {label} has {} outputs, {} has one",
            node.output.len(),
            node.op_type
        );
        wires.insert(name.clone(), output);
    }

    let outputs = graph
        .output
        .iter()
        .map(|o| {
            wires
                .get(&o.name)
                .copied()
                .with_context(|| format!("output {} is not computed by any node", o.name))
        })
        .collect::<TractResult<Vec<_>>>()?;
    model.select_output_outlets(&outputs)?;
    Ok(model)
}

/// The fact of a graph input: its element type and its shape, a named dimension becoming a
/// symbol of the model.
fn source_fact(model: &TypedModel, input: &onnx::ValueInfoProto) -> TractResult<TypedFact> {
    use onnx::tensor_shape_proto::dimension::Value as D;
    use onnx::type_proto::Value as T;
    let Some(T::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        bail!("input {} is not a tensor", input.name);
    };
    let dt = datum_type(t.elem_type)?;
    let shape = t
        .shape
        .as_ref()
        .with_context(|| format!("input {} has no declared shape", input.name))?
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(D::DimValue(x)) if *x >= 0 => Ok(TDim::Val(*x)),
            Some(D::DimValue(x)) => bail!("input {} has negative dimension {x}", input.name),
            Some(D::DimParam(s)) => Ok(TDim::Sym(model.symbols.sym(s))),
            None => bail!("input {} has an unnamed unknown dimension", input.name),
        })
        .collect::<TractResult<TVec<_>>>()?;
    Ok(TypedFact::dt_shape(dt, shape))
}

fn datum_type(code: i32) -> TractResult<DatumType> {
    Ok(match code {
        data_type::FLOAT => DatumType::F32,
        data_type::DOUBLE => DatumType::F64,
        data_type::INT32 => DatumType::I32,
        data_type::INT64 => DatumType::I64,
        _ => bail!("{}", unread_type(code)),
    })
}

fn unread_type(code: i32) -> String {
    format!("element type {code} is not one the loader reads (float, double, int32, int64)")
}

/// An initializer's value: from its typed field or its little-endian `raw_data`.
fn tensor(t: &TensorProto) -> TractResult<Tensor> {
    ensure!(
        t.data_location != Some(1),
        "its values are in an external file, which the loader does not read"
    );
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format_err!("negative dimension {d}")))
        .collect::<TractResult<Vec<usize>>>()?;
    let len = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .context("its size overflows")?;
    fn values<T: Copy, const W: usize>(
        typed: &[T],
        raw: &[u8],
        len: usize,
        from: fn([u8; W]) -> T,
    ) -> TractResult<Vec<T>> {
        let v: Vec<T> = if raw.is_empty() {
            typed.to_vec()
        } else {
            raw.chunks_exact(W)
                .map(|c| from(c.try_into().expect("chunks of W bytes")))
                .collect()
        };
        ensure!(
            v.len() == len && (raw.is_empty() || raw.len() == len * W),
            "it holds {} values where its shape needs {len}",
            if raw.is_empty() {
                v.len()
            } else {
                raw.len() / W
            }
        );
        Ok(v)
    }
    let (typed, raw) = (t, t.raw_data.as_slice());
    Ok(match t.data_type {
        data_type::FLOAT => Tensor::from_shape(
            &shape,
            &values(&typed.float_data, raw, len, f32::from_le_bytes)?,
        )?,
        data_type::DOUBLE => Tensor::from_shape(
            &shape,
            &values(&typed.double_data, raw, len, f64::from_le_bytes)?,
        )?,
        data_type::INT32 => Tensor::from_shape(
            &shape,
            &values(&typed.int32_data, raw, len, i32::from_le_bytes)?,
        )?,
        data_type::INT64 => Tensor::from_shape(
            &shape,
            &values(&typed.int64_data, raw, len, i64::from_le_bytes)?,
        )?,
        code => bail!("{}", unread_type(code)),
    })
}

/// Wires one node; its single output.
fn wire(
    model: &mut TypedModel,
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<OutletId>],
) -> TractResult<OutletId> {
    let name = model.unique_name(node.label()).into_owned();
    let required = |i: usize| -> TractResult<OutletId> {
        inputs
            .get(i)
            .copied()
            .flatten()
            .with_context(|| format!("input {i} is missing"))
    };
    let arity = |max: usize| -> TractResult<()> {
        ensure!(
            inputs.len() <= max,
            "{} inputs where {} takes at most {max}",
            inputs.len(),
            node.op_type
        );
        Ok(())
    };
    match node.op_type.as_str() {
        "Add" | "Sub" | "Mul" => {
            arity(2)?;
            let (a, b) = (required(0)?, required(1)?);
            let op: Box<dyn TypedOp> = match node.op_type.as_str() {
                "Add" => Box::new(math::add()),
                "Sub" => Box::new(math::sub()),
                _ => Box::new(math::mul()),
            };
            same_type(model, a, b)?;
            Ok(wire_with_rank_broadcast(&name, model, op, &[a, b])?[0])
        }
        "MatMul" => {
            arity(2)?;
            matmul(model, &name, required(0)?, required(1)?)
        }
        "Clip" => {
            at_least(node, opset, MIN_OPSET)?;
            arity(3)?;
            let mut wire = required(0)?;
            let dt = model.outlet_fact(wire)?.datum_type;
            for (position, label) in [(1, "min"), (2, "max")] {
                let Some(mut bound) = inputs.get(position).copied().flatten() else {
                    continue;
                };
                ensure!(
                    model.outlet_fact(bound)?.rank() == 0,
                    "its {label} bound is not a scalar"
                );
                if model.outlet_fact(bound)?.datum_type != dt {
                    bound = model.wire_node(format!("{name}.{label}.cast"), cast(dt), &[bound])?[0];
                }
                let op: Box<dyn TypedOp> = if label == "min" {
                    Box::new(math::max())
                } else {
                    Box::new(math::min())
                };
                wire =
                    wire_with_rank_broadcast(format!("{name}.{label}"), model, op, &[wire, bound])?
                        [0];
            }
            Ok(wire)
        }
        "ReduceSum" => {
            at_least(node, opset, 13)?;
            arity(2)?;
            reduce_sum(
                model,
                node,
                &name,
                required(0)?,
                inputs.get(1).copied().flatten(),
            )
        }
        other => bail!("{other} is not an operator the loader runs"),
    }
}

fn at_least(node: &NodeProto, opset: i64, min: i64) -> TractResult<()> {
    ensure!(
        opset >= min,
        "{} needs operator set {min} or later, the model imports {opset}",
        node.op_type
    );
    Ok(())
}

fn same_type(model: &TypedModel, a: OutletId, b: OutletId) -> TractResult<()> {
    let (ta, tb) = (
        model.outlet_fact(a)?.datum_type,
        model.outlet_fact(b)?.datum_type,
    );
    ensure!(
        ta == tb,
        "its inputs are {ta:?} and {tb:?}, ONNX wants one type"
    );
    Ok(())
}

/// numpy `matmul`: a 1-D operand is a vector, leading axes broadcast.
fn matmul(model: &mut TypedModel, name: &str, a: OutletId, b: OutletId) -> TractResult<OutletId> {
    same_type(model, a, b)?;
    let a_rank = model.outlet_fact(a)?.rank();
    let b_rank = model.outlet_fact(b)?.rank();
    ensure!(a_rank > 0 && b_rank > 0, "a scalar operand");
    ensure!(a_rank > 1 || b_rank > 1, "two vectors (a dot product)");
    let axes: AxesMapping = if a_rank == 1 {
        let batch: String = ('a'..).take(b_rank - 2).collect();
        format!("k,{batch}kn->{batch}n").parse()?
    } else if b_rank == 1 {
        let batch: String = ('a'..).take(a_rank - 2).collect();
        format!("{batch}mk,k->{batch}m").parse()?
    } else {
        let c_rank = a_rank.max(b_rank);
        let a_batch: String = ('a'..).take(c_rank - 2).skip(c_rank - a_rank).collect();
        let b_batch: String = ('a'..).take(c_rank - 2).skip(c_rank - b_rank).collect();
        let c_batch: String = ('a'..).take(c_rank - 2).collect();
        format!("{a_batch}mk,{b_batch}kn->{c_batch}mn").parse()?
    };
    let dt = model.outlet_fact(a)?.datum_type;
    Ok(model.wire_node(name, EinSum::new(axes, dt), &[a, b])?[0])
}

/// `ReduceSum` of opset 13: the axes are an optional second input, which must be a constant.
fn reduce_sum(
    model: &mut TypedModel,
    node: &NodeProto,
    name: &str,
    input: OutletId,
    axes: Option<OutletId>,
) -> TractResult<OutletId> {
    let keep_dims = node.int_attr("keepdims").unwrap_or(1) == 1;
    let noop_with_empty_axes = node.int_attr("noop_with_empty_axes").unwrap_or(0) == 1;
    let rank = model.outlet_fact(input)?.rank();
    let mut axes: Vec<i64> = match axes {
        None => vec![],
        Some(outlet) => model
            .outlet_fact(outlet)?
            .konst
            .as_ref()
            .context("its axes are not a constant")?
            .cast_to::<i64>()?
            .try_as_plain_ram()?
            .as_slice::<i64>()?
            .to_vec(),
    };
    if axes.is_empty() {
        if noop_with_empty_axes {
            return Ok(input);
        }
        axes = (0..rank as i64).collect();
    }
    let mut positive: Vec<usize> = axes
        .iter()
        .map(|&a| {
            let p = if a < 0 { a + rank as i64 } else { a };
            usize::try_from(p)
                .ok()
                .filter(|&p| p < rank)
                .with_context(|| format!("axis {a} is outside a rank-{rank} input"))
        })
        .collect::<TractResult<_>>()?;
    positive.sort_unstable();
    positive.dedup();
    let mut wire = model.wire_node(
        name,
        Reduce::new(positive.iter().copied().collect(), Reducer::Sum),
        &[input],
    )?[0];
    if !keep_dims {
        for &axis in positive.iter().rev() {
            wire = model.wire_node(format!("{name}.rm{axis}"), AxisOp::Rm(axis), &[wire])?[0];
        }
    }
    Ok(wire)
}

#[cfg(test)]
mod tests {
    //! Each operator on small graphs written here, against values worked out by hand, and the
    //! refusals a malformed graph gets.
    use super::*;
    use crate::onnx::tensor_shape_proto::{dimension, Dimension};
    use crate::onnx::{
        type_proto, AttributeProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
        ValueInfoProto,
    };
    use prost::Message;

    fn input(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Some(v) => dimension::Value::DimValue(*v),
                    None => dimension::Value::DimParam("N".into()),
                }),
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: data_type::FLOAT,
                    shape: Some(TensorShapeProto { dim }),
                })),
            }),
        }
    }

    fn floats(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: data_type::FLOAT,
            float_data: values.to_vec(),
            ..Default::default()
        }
    }

    fn ints(name: &str, values: &[i64]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            int64_data: values.to_vec(),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str, attrs: &[(&str, i64)]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs
                .iter()
                .map(|(n, i)| AttributeProto {
                    name: n.to_string(),
                    i: *i,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// A model with input `x: float32[N, 3]`, the given initializers and nodes, and output `y`.
    fn model(initializer: Vec<TensorProto>, nodes: Vec<NodeProto>) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(GraphProto {
                node: nodes,
                initializer,
                input: vec![input("x", &[None, Some(3)])],
                output: vec![input("y", &[])],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Builds, optimises and runs `proto` (after a round trip through its bytes) on `x`; the
    /// output's shape and values.
    fn run(proto: &ModelProto, x: &[[f32; 3]]) -> TractResult<(Vec<usize>, Vec<f32>)> {
        let proto = onnx::decode(&proto.encode_to_vec()).map_err(|e| format_err!(e))?;
        let plan = typed_model(&proto, 13)?
            .into_decluttered()?
            .into_optimized()?
            .into_runnable()?;
        let flat: Vec<f32> = x.iter().flatten().copied().collect();
        let out = plan.run(tvec!(Tensor::from_shape(&[x.len(), 3], &flat)?.into()))?;
        let view = out[0].to_plain_array_view::<f32>()?;
        Ok((view.shape().to_vec(), view.iter().copied().collect()))
    }

    const X: [[f32; 3]; 2] = [[1.0, 2.0, 3.0], [-4.0, 0.5, 10.0]];

    #[test]
    fn matmul_by_a_matrix_and_by_a_vector() {
        let w = floats("w", &[3, 2], &[1.0, 0.0, 0.0, 1.0, 2.0, -1.0]);
        let m = model(vec![w], vec![node("MatMul", &["x", "w"], "y", &[])]);
        assert_eq!(
            run(&m, &X).expect("runs"),
            (vec![2, 2], vec![7.0, -1.0, 16.0, -9.5])
        );
        let v = floats("v", &[3], &[1.0, 10.0, 100.0]);
        let m = model(vec![v], vec![node("MatMul", &["x", "v"], "y", &[])]);
        assert_eq!(run(&m, &X).expect("runs"), (vec![2], vec![321.0, 1001.0]));
    }

    #[test]
    fn element_wise_operators_broadcast_a_row() {
        let b = floats("b", &[3], &[1.0, 2.0, 3.0]);
        for (op, want) in [
            ("Add", [2.0, 4.0, 6.0, -3.0, 2.5, 13.0]),
            ("Sub", [0.0, 0.0, 0.0, -5.0, -1.5, 7.0]),
            ("Mul", [1.0, 4.0, 9.0, -4.0, 1.0, 30.0]),
        ] {
            let m = model(vec![b.clone()], vec![node(op, &["x", "b"], "y", &[])]);
            assert_eq!(
                run(&m, &X).expect("runs"),
                (vec![2, 3], want.to_vec()),
                "{op}"
            );
        }
    }

    #[test]
    fn clip_with_either_bound_or_both() {
        let lo = floats("lo", &[], &[0.0]);
        let hi = floats("hi", &[], &[2.5]);
        let both = model(
            vec![lo.clone(), hi.clone()],
            vec![node("Clip", &["x", "lo", "hi"], "y", &[])],
        );
        assert_eq!(
            run(&both, &X).expect("runs").1,
            vec![1.0, 2.0, 2.5, 0.0, 0.5, 2.5]
        );
        let max_only = model(vec![hi], vec![node("Clip", &["x", "", "hi"], "y", &[])]);
        assert_eq!(
            run(&max_only, &X).expect("runs").1,
            vec![1.0, 2.0, 2.5, -4.0, 0.5, 2.5]
        );
        let min_only = model(vec![lo], vec![node("Clip", &["x", "lo"], "y", &[])]);
        assert_eq!(
            run(&min_only, &X).expect("runs").1,
            vec![1.0, 2.0, 3.0, 0.0, 0.5, 10.0]
        );
    }

    #[test]
    fn reduce_sum_over_axes_with_and_without_kept_dimensions() {
        let last = ints("axes", &[-1]);
        let m = model(
            vec![last.clone()],
            vec![node("ReduceSum", &["x", "axes"], "y", &[("keepdims", 0)])],
        );
        assert_eq!(run(&m, &X).expect("runs"), (vec![2], vec![6.0, 6.5]));
        let m = model(
            vec![last],
            vec![node("ReduceSum", &["x", "axes"], "y", &[])],
        );
        assert_eq!(run(&m, &X).expect("runs"), (vec![2, 1], vec![6.0, 6.5]));
        let first = ints("axes", &[0]);
        let m = model(
            vec![first],
            vec![node("ReduceSum", &["x", "axes"], "y", &[("keepdims", 0)])],
        );
        assert_eq!(run(&m, &X).expect("runs"), (vec![3], vec![-3.0, 2.5, 13.0]));
        // no axes: every axis, unless the node says an empty list is no reduction
        let m = model(
            vec![],
            vec![node("ReduceSum", &["x"], "y", &[("keepdims", 0)])],
        );
        assert_eq!(run(&m, &X).expect("runs"), (vec![], vec![12.5]));
        let m = model(
            vec![],
            vec![node(
                "ReduceSum",
                &["x"],
                "y",
                &[("noop_with_empty_axes", 1)],
            )],
        );
        assert_eq!(run(&m, &X).expect("runs").1, X.concat());
    }

    #[test]
    fn raw_little_endian_initializers_read_like_typed_ones() {
        let values = [1.0f32, 10.0, 100.0];
        let raw = TensorProto {
            name: "v".into(),
            dims: vec![3],
            data_type: data_type::FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        let m = model(vec![raw], vec![node("MatMul", &["x", "v"], "y", &[])]);
        assert_eq!(run(&m, &X).expect("runs").1, vec![321.0, 1001.0]);
    }

    #[test]
    fn malformed_graphs_are_refused_with_what_is_wrong() {
        let err = |m: &ModelProto| format!("{:#}", run(m, &X).expect_err("refused"));
        let undefined = model(vec![], vec![node("Add", &["x", "nope"], "y", &[])]);
        assert!(
            err(&undefined).contains("reads nope, which nothing before it defines"),
            "{}",
            err(&undefined)
        );
        let short = floats("v", &[3], &[1.0, 2.0]);
        let m = model(vec![short], vec![node("MatMul", &["x", "v"], "y", &[])]);
        assert!(
            err(&m).contains("holds 2 values where its shape needs 3"),
            "{}",
            err(&m)
        );
        let mut external = floats("v", &[3], &[1.0, 2.0, 3.0]);
        external.data_location = Some(1);
        let m = model(vec![external], vec![node("Add", &["x", "v"], "y", &[])]);
        assert!(err(&m).contains("external file"), "{}", err(&m));
        let mixed = model(
            vec![ints("i", &[1, 2, 3])],
            vec![node("Add", &["x", "i"], "y", &[])],
        );
        assert!(
            err(&mixed).contains("ONNX wants one type"),
            "{}",
            err(&mixed)
        );
        let axis = model(
            vec![ints("axes", &[2])],
            vec![node("ReduceSum", &["x", "axes"], "y", &[])],
        );
        assert!(
            err(&axis).contains("axis 2 is outside a rank-2 input"),
            "{}",
            err(&axis)
        );
        let unknown_output = model(vec![], vec![node("Add", &["x", "x"], "z", &[])]);
        assert!(
            err(&unknown_output).contains("output y is not computed by any node"),
            "{}",
            err(&unknown_output)
        );
        let proto =
            onnx::decode(&model(vec![], vec![node("ReduceSum", &["x"], "y", &[])]).encode_to_vec())
                .expect("decodes");
        let old = format!("{:#}", typed_model(&proto, 12).expect_err("opset 12"));
        assert!(old.contains("ReduceSum needs operator set 13"), "{old}");
    }
}
