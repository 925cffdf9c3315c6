<#
.SYNOPSIS
  Builds dist\potluck-setup-<version>.exe on Windows: the GUI-only frozen program, the node wheel, then Inno Setup.
  Run from anywhere:  powershell -ExecutionPolicy Bypass -File installer\windows\build_installer.ps1
  Needs: Python 3.11 with PySide6-Essentials, platformdirs, keyring, pyinstaller and build installed; Inno Setup 6.
#>
$ErrorActionPreference = "Stop"
$root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
Set-Location $root

$version = python -c "import ast; print(next(ast.literal_eval(n.value) for n in ast.parse(open('core/__init__.py').read()).body if isinstance(n, ast.Assign) and getattr(n.targets[0], 'id', '') == '__version__'))"
if ($LASTEXITCODE -ne 0 -or -not $version) { throw "could not read __version__ from core\__init__.py" }

python packaging\build.py --flavour gui
if ($LASTEXITCODE -ne 0) { throw "packaging\build.py failed" }
if (Test-Path dist\wheel) { Remove-Item -Recurse -Force dist\wheel }
python -m build --wheel --outdir dist\wheel
if ($LASTEXITCODE -ne 0) { throw "building the node wheel failed (pip install build)" }

$iscc = (Get-Command iscc.exe -ErrorAction SilentlyContinue).Source
if (-not $iscc) { $iscc = Join-Path ${env:ProgramFiles(x86)} "Inno Setup 6\ISCC.exe" }
if (-not (Test-Path $iscc)) { throw "Inno Setup 6 not found: choco install innosetup, or https://jrsoftware.org/isinfo.php" }
& $iscc "/DAppVersion=$version" installer\windows\potluck.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }
Get-Item "dist\potluck-setup-$version.exe" | ForEach-Object { "built $($_.FullName) ($([math]::Round($_.Length / 1MB)) MB)" }
