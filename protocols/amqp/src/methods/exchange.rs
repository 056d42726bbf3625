//! Class `exchange`: declare, delete, bind, unbind (exchange-to-exchange).

use std::sync::Arc;

use amq_protocol::protocol::AMQPClass;
use amq_protocol::protocol::exchange;
use gw_core::{
    Access, Created, Destination, ExchangeKind, ExchangeSpec, HeaderValue, Headers, is_reserved,
};

use super::Answer;
use super::queue::binding;
use crate::args::type_name;
use crate::channel::Ctx;
use crate::error::{AmqpError, AmqpResult};
use crate::properties::headers_from_table;
use crate::session::Session;

/// Argument naming where unroutable messages go (RabbitMQ's alternate exchange).
const ALTERNATE_EXCHANGE: &str = "alternate-exchange";
/// The delayed-message plugin's exchange type; the engine delays on any
/// exchange, so it is an exchange of the kind `x-delayed-type` names.
const DELAYED_TYPE: &str = "x-delayed-message";

/// Dispatches an `exchange` method; returns the answer, to be sent once the
/// change is durable.
pub fn handle(ctx: &mut Ctx, m: exchange::AMQPMethod) -> AmqpResult<Answer> {
    use exchange::AMQPMethod as M;
    let s = Arc::clone(&ctx.session);
    let answer = |nowait: bool, ok: M| Answer::new((!nowait).then_some(AMQPClass::Exchange(ok)));
    Ok(match m {
        M::Declare(d) => {
            let created = declare(&s, &d)?;
            answer(d.nowait, M::DeclareOk(exchange::DeclareOk {})).creating(created)
        }
        M::Delete(d) => {
            delete(&s, d.exchange.as_str(), d.if_unused)?;
            answer(d.nowait, M::DeleteOk(exchange::DeleteOk {}))
        }
        M::Bind(b) => {
            let dest = Destination::Exchange(b.destination.as_str().to_owned());
            let key = b.routing_key.as_str().to_owned();
            let created = binding(&s, true, b.source.as_str(), dest, key, &b.arguments)?;
            answer(b.nowait, M::BindOk(exchange::BindOk {})).creating(created)
        }
        M::Unbind(u) => {
            let dest = Destination::Exchange(u.destination.as_str().to_owned());
            let key = u.routing_key.as_str().to_owned();
            binding(&s, false, u.source.as_str(), dest, key, &u.arguments)?;
            answer(u.nowait, M::UnbindOk(exchange::UnbindOk {}))
        }
        _ => return Err(AmqpError::command_invalid("unimplemented method")),
    })
}

/// Declares (or checks, when passive) an exchange; returns it when this created it.
fn declare(s: &Session, d: &exchange::Declare) -> AmqpResult<Option<Created>> {
    let name = d.exchange.as_str();
    if name.is_empty() {
        return Err(AmqpError::access_refused(
            "operation not permitted on the default exchange",
        ));
    }
    let resource = s.resource("exchange", name);
    if d.passive {
        s.check_any("exchange", name)?;
        s.tenant
            .exchange(name)
            .map_err(|_| AmqpError::not_found(format!("no {resource}")))?;
        return Ok(None);
    }
    let arguments = headers_from_table(&d.arguments);
    let kind = exchange_kind(d.kind.as_str(), &arguments)?;
    s.check(Access::Configure, "exchange", name)?;
    let alternate = match arguments.get(ALTERNATE_EXCHANGE) {
        None => None,
        Some(v) => Some(v.as_str().map(str::to_owned).ok_or_else(|| {
            AmqpError::precondition(format!(
                "invalid type '{}' for arg '{ALTERNATE_EXCHANGE}' in {resource}",
                type_name(v)
            ))
        })?),
    };
    let spec = ExchangeSpec {
        kind,
        durable: d.durable,
        auto_delete: d.auto_delete,
        internal: d.internal,
        alternate_exchange: alternate,
        arguments,
    };
    match s.tenant.exchange(name) {
        // RabbitMQ compares these and nothing else; an equivalent redeclare is a no-op.
        Ok(existing) => equivalent(&existing.spec, &spec, &resource).map(|()| None),
        Err(_) => {
            if is_reserved(name) {
                return Err(AmqpError::access_refused(format!(
                    "exchange name '{name}' contains reserved prefix 'amq.*'"
                )));
            }
            if let Some(ae) = &spec.alternate_exchange {
                s.check(Access::Read, "exchange", name)?;
                s.check(Access::Write, "exchange", ae)?;
            }
            let created = s
                .tenant
                .declare_exchange(name, spec)
                .map_err(|e| AmqpError::engine(e, s.vhost()))?;
            Ok(created.then(|| Created::Exchange {
                tenant: s.tenant.clone(),
                name: name.to_owned(),
            }))
        }
    }
}

/// The engine kind for an AMQP exchange type. An unknown type closes the
/// channel with 406, as RabbitMQ 3.13+ does (`rabbit_exchange:check_type`).
fn exchange_kind(kind: &str, arguments: &Headers) -> AmqpResult<ExchangeKind> {
    let kind = if kind == DELAYED_TYPE {
        arguments
            .get("x-delayed-type")
            .and_then(HeaderValue::as_str)
            .unwrap_or("direct")
    } else {
        kind
    };
    ExchangeKind::parse(kind)
        .ok_or_else(|| AmqpError::precondition(format!("unknown exchange type '{kind}'")))
}

fn equivalent(have: &ExchangeSpec, want: &ExchangeSpec, resource: &str) -> AmqpResult {
    let fail = |what: &str, received: String, current: String| {
        Err(AmqpError::precondition(format!(
            "inequivalent arg '{what}' for {resource}: received '{received}' but current is '{current}'"
        )))
    };
    if have.kind != want.kind {
        return fail("type", want.kind.as_str().into(), have.kind.as_str().into());
    }
    if have.durable != want.durable {
        return fail(
            "durable",
            want.durable.to_string(),
            have.durable.to_string(),
        );
    }
    if have.auto_delete != want.auto_delete {
        return fail(
            "auto_delete",
            want.auto_delete.to_string(),
            have.auto_delete.to_string(),
        );
    }
    if have.internal != want.internal {
        return fail(
            "internal",
            want.internal.to_string(),
            have.internal.to_string(),
        );
    }
    if have.alternate_exchange != want.alternate_exchange {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
        return fail(
            ALTERNATE_EXCHANGE,
            show(&want.alternate_exchange),
            show(&have.alternate_exchange),
        );
    }
    Ok(())
}

fn delete(s: &Session, name: &str, if_unused: bool) -> AmqpResult {
    if name.is_empty() {
        return Err(AmqpError::access_refused(
            "operation not permitted on the default exchange",
        ));
    }
    let resource = s.resource("exchange", name);
    if is_reserved(name) {
        return Err(AmqpError::access_refused(format!(
            "deletion of system {resource} not allowed"
        )));
    }
    s.check(Access::Configure, "exchange", name)?;
    match s.tenant.delete_exchange(name, if_unused) {
        Ok(()) | Err(gw_core::Error::NotFound { .. }) => Ok(()),
        Err(gw_core::Error::PreconditionFailed(_)) => {
            Err(AmqpError::precondition(format!("{resource} in use")))
        }
        Err(e) => Err(AmqpError::engine(e, s.vhost())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_the_delayed_plugin_type() {
        let none = Headers::new();
        assert_eq!(exchange_kind("topic", &none).unwrap(), ExchangeKind::Topic);
        let mut args = Headers::new();
        args.push("x-delayed-type", HeaderValue::string("fanout"));
        assert_eq!(
            exchange_kind(DELAYED_TYPE, &args).unwrap(),
            ExchangeKind::Fanout
        );
        let e = exchange_kind("x-consistent-hash", &none).unwrap_err();
        assert_eq!(e.code, 406);
        assert!(!e.is_connection_error());
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - unknown exchange type 'x-consistent-hash'"
        );
    }

    #[test]
    fn redeclare_compares_like_rabbitmq() {
        let have = ExchangeSpec::new(ExchangeKind::Direct);
        let mut want = have.clone();
        want.arguments.push("x-other", HeaderValue::I32(1));
        assert!(equivalent(&have, &want, "exchange 'x' in vhost '/'").is_ok());
        want.kind = ExchangeKind::Fanout;
        assert_eq!(
            equivalent(&have, &want, "exchange 'x' in vhost '/'")
                .unwrap_err()
                .text,
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': received 'fanout' but current is 'direct'"
        );
    }
}
