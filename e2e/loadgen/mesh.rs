//! `rudder-loadgen mesh`: a synthetic, deterministic mesh as Kubernetes and
//! Istio YAML, one small file per service so an edit rewrites little. The
//! layout is also rebuilt in memory by the churn driver from `mesh.json`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::plan;

#[derive(clap::Args, Debug, Clone)]
pub struct MeshArgs {
    /// Output directory (created; must be empty if it exists).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 100)]
    pub services: u32,
    /// Endpoints per service.
    #[arg(long, default_value_t = 10)]
    pub endpoints: u32,
    #[arg(long, default_value_t = 10)]
    pub namespaces: u32,
    /// Share of services with a VirtualService (0..1).
    #[arg(long, default_value_t = 0.1)]
    pub vs_share: f64,
    /// Share of services with a DestinationRule (0..1).
    #[arg(long, default_value_t = 0.1)]
    pub dr_share: f64,
    /// Share of services whose pods get a Sidecar resource (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub sidecar_share: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What `mesh` was asked for, saved as DIR/mesh.json (not *.yaml, so Rudder
/// does not read it); the mesh is a pure function of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshSpec {
    pub services: u32,
    pub endpoints: u32,
    pub namespaces: u32,
    pub vs_share: f64,
    pub dr_share: f64,
    pub sidecar_share: f64,
    pub seed: u64,
}

pub const SPEC_FILE: &str = "mesh.json";

/// One service and everything written in its file.
#[derive(Debug, Clone)]
pub struct Svc {
    pub index: u32,
    pub ns: String,
    pub name: String,
    pub vip: Ipv4Addr,
    pub tcp: bool,
    pub addrs: Vec<Ipv4Addr>,
    pub zones: Vec<&'static str>,
    /// Added by `churn --kind service`.
    pub extra_port: Option<u16>,
    /// The mesh gave the service a VirtualService.
    pub vs: bool,
    /// The id of the last `churn --kind virtual-service` edit: the service's
    /// VirtualService (written even when `vs` is false) leads with the route
    /// `plan::change_route_name(id)`.
    pub vs_change: Option<u32>,
    pub dr: bool,
    pub sidecar: bool,
    pub slice: String,
    /// Endpoint flips applied so far; the next one replaces slot flips % M.
    pub flips: u32,
}

/// SplitMix64: tiny, fast, and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

impl MeshSpec {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.services > 0 && self.namespaces > 0,
            "--services and --namespaces must be at least 1"
        );
        plan::check_mesh_fits(self.services, self.endpoints).map_err(anyhow::Error::msg)
    }

    /// Every service, in index order. Each service draws from its own seeded
    /// stream, so changing one share does not reshuffle the rest.
    pub fn build(&self) -> Vec<Svc> {
        (0..self.services).map(|i| self.service(i)).collect()
    }

    fn service(&self, i: u32) -> Svc {
        let mut rng = Rng::new(self.seed ^ u64::from(i).wrapping_mul(0xA076_1D64_78BD_642F));
        let zones = ["zone-a", "zone-b", "zone-c"];
        let suffix: String = (0..5)
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect();
        Svc {
            index: i,
            ns: plan::namespace_name(plan::namespace_of(i, self.namespaces)),
            name: plan::service_name(i),
            vip: plan::vip(i),
            tcp: i.is_multiple_of(10),
            addrs: (0..self.endpoints)
                .map(|e| plan::endpoint(self.services, self.endpoints, i, e))
                .collect(),
            zones: (0..self.endpoints)
                .map(|_| zones[rng.below(3) as usize])
                .collect(),
            extra_port: None,
            vs_change: None,
            vs: rng.chance(self.vs_share),
            dr: rng.chance(self.dr_share),
            sidecar: rng.chance(self.sidecar_share),
            slice: format!("{}-{suffix}", plan::service_name(i)),
            flips: 0,
        }
    }

    pub fn load(dir: &Path) -> anyhow::Result<MeshSpec> {
        let path = dir.join(SPEC_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (write the mesh with `mesh --out` first)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

pub fn service_file(dir: &Path, s: &Svc) -> PathBuf {
    dir.join(&s.ns).join(format!("{}.yaml", s.name))
}

pub fn run(args: MeshArgs) -> anyhow::Result<()> {
    let spec = MeshSpec {
        services: args.services,
        endpoints: args.endpoints,
        namespaces: args.namespaces,
        vs_share: args.vs_share,
        dr_share: args.dr_share,
        sidecar_share: args.sidecar_share,
        seed: args.seed,
    };
    spec.check()?;
    let out = &args.out;
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty; mesh writes into a fresh directory",
            out.display()
        );
    }
    for k in 0..spec.namespaces {
        std::fs::create_dir_all(out.join(plan::namespace_name(k)))?;
    }
    let namespaces: String = (0..spec.namespaces)
        .map(|k| crate::render::namespace(&plan::namespace_name(k)))
        .collect();
    std::fs::write(out.join("namespaces.yaml"), namespaces)?;
    let (mut vs, mut dr, mut sc) = (0, 0, 0);
    for s in spec.build() {
        vs += u32::from(s.vs);
        dr += u32::from(s.dr);
        sc += u32::from(s.sidecar);
        std::fs::write(service_file(out, &s), crate::render::service_file(&s))?;
    }
    std::fs::write(
        out.join(SPEC_FILE),
        serde_json::to_string_pretty(&spec)? + "\n",
    )?;
    eprintln!(
        "mesh: {} namespaces, {} services x {} endpoints, {vs} VirtualServices, {dr} DestinationRules, {sc} Sidecars in {}",
        spec.namespaces,
        spec.services,
        spec.endpoints,
        out.display()
    );
    Ok(())
}
