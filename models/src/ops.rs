//! The ONNX operators a model may use, and nothing else.
//!
//! `tract_onnx::onnx()` registers every operator tract knows (convolutions, recurrent layers,
//! FFTs, ...), so all of them are linked into the agent whether a model uses them or not: about
//! half of the agent's code. The shipped models are linear (a clipped, centred projection and its
//! residual), so the register here holds only what they need, and a model using anything else is
//! refused at load with the operator's name ([`check_operators`]) instead of failing somewhere in
//! tract's inference.
//!
//! `Add`, `Sub`, `Mul` and `MatMul` are tract's own operators. `Clip` (opset 11 and later: bounds
//! as inputs) and `ReduceSum` (opset 13 and later: axes as an input) are written here, because
//! tract-onnx keeps its versions private; both lower to tract-core's `Max`/`Min` and `Reduce`.

use tract_onnx::model::{optional_inputs, OnnxOpRegister, ParsingContext};
use tract_onnx::pb::{GraphProto, NodeProto};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx::tract_hir::ops::nn::{Reduce, Reducer};

/// The operators a model may use (ONNX domain, opset 11 or later).
pub const SUPPORTED: &[&str] = &["Add", "Clip", "MatMul", "Mul", "ReduceSum", "Sub"];

/// The lowest operator set [`register`] understands (`Clip` takes its bounds as inputs).
pub const MIN_OPSET: i64 = 11;

/// An operator register with exactly [`SUPPORTED`].
pub(crate) fn register() -> OnnxOpRegister {
    let mut reg = OnnxOpRegister::default();
    reg.insert("Add", |_, _| Ok((ops::math::Add.into_hir(), vec![])));
    reg.insert("Sub", |_, _| Ok((ops::math::Sub.into_hir(), vec![])));
    reg.insert("Mul", |_, _| Ok((ops::math::Mul.into_hir(), vec![])));
    reg.insert("MatMul", |_, _| {
        Ok((expand(ops::matmul::MatMulInference::default()), vec![]))
    });
    reg.insert("Clip", clip);
    reg.insert("ReduceSum", reduce_sum);
    reg
}

/// The operators of `graph` that [`register`] does not have, each named once, in graph order.
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

fn opset_at_least(ctx: &ParsingContext, node: &NodeProto, min: i64) -> TractResult<()> {
    if ctx.onnx_operator_set_version < min {
        bail!(
            "{} needs operator set {min} or later, the model imports {}",
            node.op_type,
            ctx.onnx_operator_set_version
        );
    }
    Ok(())
}

fn clip(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    opset_at_least(ctx, node, MIN_OPSET)?;
    let mut bounds = optional_inputs(node).skip(1);
    let min = bounds.next().flatten();
    let max = bounds.next().flatten();
    Ok((expand(Clip { min, max }), vec![]))
}

/// `Clip` with its bounds as (optional) inputs: the input positions of `min` and `max`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Clip {
    min: Option<usize>,
    max: Option<usize>,
}

impl Expansion for Clip {
    fn name(&self) -> StaticName {
        "Clip".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(
            inputs,
            1 + self.min.is_some() as usize + self.max.is_some() as usize,
        )?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        name: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        let mut wire = inputs[0];
        let bounds = [
            (self.min, "min", ops::math::max()),
            (self.max, "max", ops::math::min()),
        ];
        for (position, label, op) in bounds {
            let Some(position) = position else { continue };
            let mut bound = inputs[position];
            if model.outlet_fact(bound)?.datum_type != dt {
                bound = model.wire_node(
                    format!("{name}.{label}.cast"),
                    tract_onnx::tract_core::ops::cast::cast(dt),
                    &[bound],
                )?[0];
            }
            wire =
                wire_with_rank_broadcast(format!("{name}.{label}"), model, op, &[wire, bound])?[0];
        }
        Ok(tvec!(wire))
    }
}

fn reduce_sum(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    opset_at_least(ctx, node, 13)?;
    let keep_dims = node.get_attr_opt("keepdims")?.unwrap_or(1i64) == 1;
    let noop_with_empty_axes = node.get_attr_opt("noop_with_empty_axes")?.unwrap_or(0i64) == 1;
    let axes_input = node.input.len() == 2 && !node.input[1].is_empty();
    Ok((
        expand(ReduceSum {
            axes_input,
            keep_dims,
            noop_with_empty_axes,
        }),
        vec![],
    ))
}

/// `ReduceSum` of opset 13: the axes are an optional second input, which must be a constant.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ReduceSum {
    axes_input: bool,
    keep_dims: bool,
    noop_with_empty_axes: bool,
}

impl ReduceSum {
    /// The tract reduction over `axes` (all axes of a `rank`-dimensional input when empty,
    /// unless the node says an empty list means no reduction).
    fn reduce(&self, mut axes: Vec<i64>, rank: usize) -> Reduce {
        if axes.is_empty() && !self.noop_with_empty_axes {
            axes = (0..rank as i64).collect();
        }
        Reduce::new(Some(axes), self.keep_dims, Reducer::Sum)
    }

    fn output_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
        axes: Vec<i64>,
        rank: usize,
    ) -> InferenceResult {
        let op = self.reduce(axes, rank);
        let reduced = op.axes.as_ref().map_or(0, Vec::len) as i64;
        if self.keep_dims {
            s.equals(&inputs[0].rank, &outputs[0].rank)?;
        } else {
            s.equals(inputs[0].rank.bex() - reduced, &outputs[0].rank)?;
        }
        s.given(&inputs[0].shape, move |s, shape| {
            s.equals(&outputs[0].shape, op.output_shape(&shape))
        })
    }
}

impl Expansion for ReduceSum {
    fn name(&self) -> StaticName {
        "ReduceSum".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1 + self.axes_input as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        if self.axes_input {
            s.given_2(&inputs[0].rank, &inputs[1].value, move |s, rank, axes| {
                let axes = axes
                    .cast_to::<i64>()?
                    .try_as_plain_ram()?
                    .as_slice::<i64>()?
                    .to_vec();
                self.output_rules(s, inputs, outputs, axes, rank as usize)
            })
        } else {
            s.given(&inputs[0].rank, move |s, rank| {
                self.output_rules(s, inputs, outputs, vec![], rank as usize)
            })
        }
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let axes = if self.axes_input {
            model
                .outlet_fact(inputs[1])?
                .konst
                .as_ref()
                .context("ReduceSum: the axes must be a constant")?
                .cast_to::<i64>()?
                .try_as_plain_ram()?
                .as_slice::<i64>()?
                .to_vec()
        } else {
            vec![]
        };
        let rank = model.outlet_fact(inputs[0])?.rank();
        self.reduce(axes, rank).wire(prefix, model, &inputs[0..1])
    }
}
