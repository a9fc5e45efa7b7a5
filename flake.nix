{
  description = "speech-repro: Kedro speech-recognition experiments, Python environment built from uv.lock";

  # Every input is locked in flake.lock; every transitive input follows the one nixpkgs, so the
  # lock has exactly one node per input below. docs/nix.md says what was and was not exercised.
  inputs = {
    # A release branch: its interpreters and glibc stay put for the life of the release.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

    pyproject-nix = {
      url = "github:pyproject-nix/pyproject.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # Reads uv.lock, so Nix users get exactly the versions (and wheel hashes) CI installs.
    uv2nix = {
      url = "github:pyproject-nix/uv2nix";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # uv does not lock build systems (setuptools for this project and for the one sdist).
    pyproject-build-systems = {
      url = "github:pyproject-nix/build-system-pkgs";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.uv2nix.follows = "uv2nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # Exposes the host's NVIDIA driver libraries to Nix-built programs on non-NixOS Linux.
    nix-gl-host = {
      url = "github:numtide/nix-gl-host";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      pyproject-nix,
      uv2nix,
      pyproject-build-systems,
      nix-gl-host,
      ...
    }:
    let
      inherit (nixpkgs) lib;

      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # macOS gets the CPU shell only: uv.lock has no CUDA wheels for it.
      systems = linuxSystems ++ [ "aarch64-darwin" ];
      forAllSystems = lib.genAttrs systems;
      forLinux = lib.genAttrs linuxSystems;

      # The oldest NVIDIA driver the locked CUDA 13.0 user space runs on (NVIDIA's CUDA 13.0
      # release notes, Linux x86_64). Must equal kedro_repro.environment.MIN_NVIDIA_DRIVER,
      # which checks it at run time; tests/test_flake.py asserts that they agree.
      minNvidiaDriver = "580.65.06";

      # pyproject.toml + uv.lock, read by uv2nix: the only description of the Python environment.
      workspace = uv2nix.lib.workspace.loadWorkspace { workspaceRoot = ./.; };

      # Wheels, as CI installs them; only antlr4-python3-runtime 4.9.3 (omegaconf) has none.
      overlay = workspace.mkPyprojectOverlay { sourcePreference = "wheel"; };

      # The dev shells install speech-repro editable, from the checkout at $REPO_ROOT.
      editableOverlay = workspace.mkEditablePyprojectOverlay { root = "$REPO_ROOT"; };

      # The one sdist in uv.lock is a setup.py project; uv locks no build system for it.
      buildSystemFixups = final: prev: {
        antlr4-python3-runtime = prev.antlr4-python3-runtime.overrideAttrs (old: {
          nativeBuildInputs = old.nativeBuildInputs ++ final.resolveBuildSystem { setuptools = [ ]; };
        });
      };

      # torch's Linux wheels find the nvidia-* wheels through RUNPATHs relative to one shared
      # site-packages ($ORIGIN/../../nvidia/cu13/lib, ...). Under pyproject.nix every wheel is its
      # own store path, so autoPatchelf must be told where the sibling wheels' libraries are.
      # The CUDA user space therefore comes from uv.lock (the same bits `uv sync` installs), not
      # from nixpkgs' cudaPackages: no allowUnfree, no cudaSupport rebuild.
      cudaWheelFixups =
        pkgs: final: prev:
        let
          sitePackages = final.python.sitePackages;
          isNvidia = name: lib.hasPrefix "nvidia-" name;
          # The nvidia-* wheels among a dependency spec's closure; torch reaches most of them
          # through cuda-toolkit's extras, which resolveVirtualEnv follows.
          nvidiaWheels = spec: lib.filter (drv: isNvidia drv.pname) (final.resolveVirtualEnv spec);
          nvidiaLibDirs = spec: map (drv: "${drv}/${sitePackages}/nvidia") (nvidiaWheels spec);

          fixup =
            name:
            {
              # Whose nvidia-* libraries this wheel links against: by default its own declared
              # dependencies (acyclic, unlike "every nvidia wheel").
              spec ? null,
              extraSearchPaths ? [ ],
              # Libraries that are not in the closure on purpose; listed by name so that any
              # other missing library still fails the build.
              ignoreMissing ? [ ],
            }:
            prev.${name}.overrideAttrs (old: {
              # After autoPatchelfHook, as nixpkgs' torch-bin does: appends /run/opengl-driver/lib
              # (where NixOS puts libcuda.so.1) to every RUNPATH.
              nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.autoAddDriverRunpath ];
              autoPatchelfIgnoreMissingDeps = (old.autoPatchelfIgnoreMissingDeps or [ ]) ++ ignoreMissing;
              # cuDNN, NVRTC and cudart dlopen siblings by bare name; autoPatchelf keeps only the
              # directories of NEEDED libraries, so the wheel's own directory is put back.
              appendRunpaths = (old.appendRunpaths or [ ]) ++ [ "$ORIGIN" ];
              preFixup =
                (old.preFixup or "")
                + lib.concatMapStrings (dir: "addAutoPatchelfSearchPath ${dir}\n") (
                  nvidiaLibDirs (if spec == null then old.passthru.dependencies or { } else spec)
                  ++ extraSearchPaths
                );
            });

          nvidiaNames = lib.filter isNvidia (lib.attrNames prev);
        in
        lib.genAttrs nvidiaNames (name: fixup name { })
        // {
          # Multi-node plugins this single-GPU project never loads: GPUDirect Storage over RDMA
          # (libcufile_rdma) and NVSHMEM's MPI/PMIx/OpenSHMEM bootstraps and InfiniBand,
          # libfabric and UCX transports. Each is dlopened only when selected.
          nvidia-cufile = fixup "nvidia-cufile" {
            ignoreMissing = [
              "libibverbs.so.1"
              "librdmacm.so.1"
              "libmlx5.so.1"
            ];
          };
          nvidia-nvshmem-cu13 = fixup "nvidia-nvshmem-cu13" {
            ignoreMissing = [
              "libmpi.so.40"
              "liboshmem.so.40"
              "libpmix.so.2"
              "libfabric.so.1"
              "libucp.so.0"
              "libucs.so.0"
              "libmlx5.so.1"
            ];
          };
          # libcuda.so.1 is the kernel driver's user-space half: never pinned, found at run time
          # (/run/opengl-driver/lib on NixOS, nixglhost elsewhere; see docs/nix.md).
          torch = fixup "torch" { ignoreMissing = [ "libcuda.so.1" ]; };
          # torchaudio's wheel declares no dependency on torch, yet links libtorch and libc10.
          torchaudio = fixup "torchaudio" {
            spec = {
              torch = [ ];
            };
            extraSearchPaths = [ "${final.torch}/${sitePackages}/torch/lib" ];
          };
          # cuda-bindings dlopens libcuda.so.1 itself; it needs only the driver RUNPATH.
          cuda-bindings = fixup "cuda-bindings" { };
        };

      pkgsFor = system: nixpkgs.legacyPackages.${system};

      pythonSets = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
          # Named explicitly: pyproject.toml asks for >=3.11,<3.13, and nixos-26.05's default
          # python3 is 3.13 by nixpkgs' schedule (inferred, not evaluated). 3.12 is the newest
          # allowed, the one the GPU machine runs, and uv.lock has cp312 wheels for every binary
          # package. uv2nix also asserts at evaluation that it satisfies requires-python.
          python = pkgs.python312;
        in
        (pkgs.callPackage pyproject-nix.build.packages { inherit python; }).overrideScope (
          lib.composeManyExtensions (
            [
              pyproject-build-systems.overlays.wheel
              overlay
              buildSystemFixups
            ]
            ++ lib.optional pkgs.stdenv.hostPlatform.isLinux (cudaWheelFixups pkgs)
          )
        )
      );

      # What a run records (environment variables starting SPEECH_REPRO are captured by
      # kedro_repro.environment): which flake and which nixpkgs built the environment.
      provenanceEnv = shell: {
        SPEECH_REPRO_NIX_SHELL = shell;
        SPEECH_REPRO_FLAKE_REV = self.rev or self.dirtyRev or "unknown";
        SPEECH_REPRO_NIXPKGS_REV = nixpkgs.rev;
      };

      mkDevShell =
        system: shell: extra:
        let
          pkgs = pkgsFor system;
          pythonSet = pythonSets.${system}.overrideScope editableOverlay;
          # deps.all: the project, its dependencies and the dev group (pytest, pytest-xdist, ruff).
          venv = pythonSet.mkVirtualEnv "speech-repro-dev-env" workspace.deps.all;
        in
        pkgs.mkShell {
          packages = [ venv ] ++ (extra.packages or [ ]);
          env = {
            # The environment is Nix's: uv, if the user has it, must neither sync nor download.
            UV_NO_SYNC = "1";
            UV_PYTHON = pythonSet.python.interpreter;
            UV_PYTHON_DOWNLOADS = "never";
          }
          // provenanceEnv shell;
          shellHook = ''
            # nixpkgs' Python builders leak PYTHONPATH into unrelated programs.
            unset PYTHONPATH
            # The editable install points here.
            REPO_ROOT=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
            export REPO_ROOT
          ''
          + (extra.shellHook or "");
        };

      # The CUDA shell warns, without failing, when the driver is older than the floor or absent.
      # The run itself checks again (kedro_repro.environment.check_driver) and records it.
      cudaShellHook = ''
        if [ -e /run/opengl-driver/lib/libcuda.so.1 ]; then
          # NixOS: torch's libraries already carry /run/opengl-driver/lib in their RUNPATH.
          # Triton looks libcuda up with ldconfig, which knows nothing of it.
          export TRITON_LIBCUDA_PATH=/run/opengl-driver/lib
        else
          echo "speech-repro: no /run/opengl-driver/lib (not NixOS?): run CUDA programs through nixglhost," >&2
          echo "  e.g. nixglhost kedro run --params training.device=cuda   (docs/nix.md)" >&2
        fi
        if command -v nvidia-smi >/dev/null 2>&1; then
          found=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)
          minimum=${minNvidiaDriver}
          if [ -z "$found" ]; then
            echo "speech-repro: nvidia-smi reports no driver version" >&2
          elif [ "$(printf '%s\n%s\n' "$minimum" "$found" | sort -V | head -n 1)" != "$minimum" ]; then
            echo "speech-repro: NVIDIA driver $found is older than $minimum, the minimum for CUDA 13.0" >&2
          fi
          unset found minimum
        else
          echo "speech-repro: nvidia-smi not found; CUDA runs will fail without an NVIDIA driver" >&2
        fi
      '';
    in
    {
      # The whole Python package set: `nix build .#torch` builds one patched wheel, the quickest
      # way to check the CUDA fix-ups on a new machine.
      legacyPackages = pythonSets;

      packages = forAllSystems (
        system:
        {
          # The runtime environment (no dev group), non-editable: `nix build` gives kedro & co.
          default = pythonSets.${system}.mkVirtualEnv "speech-repro-env" workspace.deps.default;
        }
        // lib.optionalAttrs (lib.elem system linuxSystems) {
          nixglhost = nix-gl-host.packages.${system}.default;
        }
      );

      apps = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
          train = pkgs.writeShellApplication {
            name = "speech-repro-train";
            runtimeInputs = [ self.packages.${system}.default ];
            runtimeEnv = provenanceEnv "app";
            text = ''
              # Kedro runs the project in the working directory: pyproject.toml, conf/, data/.
              if [ ! -f pyproject.toml ] || [ ! -d conf ]; then
                echo "nix run .#train: run it from the speech-repro checkout ($PWD has no pyproject.toml and conf/)" >&2
                exit 2
              fi
              exec kedro run "$@"
            '';
          };
          app = {
            type = "app";
            program = lib.getExe train;
            meta.description = "kedro run in the current speech-repro checkout; arguments go to kedro run";
          };
        in
        {
          train = app;
          default = app;
        }
      );

      devShells = forAllSystems (
        system:
        {
          # CPU. On Linux torch from PyPI still ships its CUDA libraries (that is what CI tests);
          # this shell just does no driver wiring.
          default = mkDevShell system "default" { };
        }
        // lib.optionalAttrs (lib.elem system linuxSystems) {
          # The same environment (the CUDA 13.0 user space pinned by uv.lock) plus the driver
          # wiring: nixglhost for non-NixOS hosts and a driver-version check on entry.
          cuda = mkDevShell system "cuda" {
            packages = [ nix-gl-host.packages.${system}.default ];
            shellHook = cudaShellHook;
          };
        }
      );

      # `nix flake check`: the test suite, CPU only, in the build sandbox. Building its
      # environment also proves the CUDA fixups: autoPatchelf fails on any unresolved library.
      checks = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
          testEnv = pythonSets.${system}.mkVirtualEnv "speech-repro-test-env" workspace.deps.all;
        in
        {
          pytest = pkgs.stdenv.mkDerivation {
            name = "speech-repro-pytest";
            src = ./.;
            nativeBuildInputs = [
              testEnv
              pkgs.git # tests build throwaway repositories to check the recorded git state
            ];
            dontConfigure = true;
            env = {
              KEDRO_DISABLE_TELEMETRY = "1";
              DO_NOT_TRACK = "1";
            };
            buildPhase = ''
              runHook preBuild
              export HOME=$TMPDIR
              # pyproject.toml's addopts applies (-n 2); tests that need nix-instantiate skip here.
              pytest -p no:cacheprovider
              runHook postBuild
            '';
            installPhase = ''
              runHook preInstall
              touch $out
              runHook postInstall
            '';
          };
        }
      );
    };
}
