<#
.SYNOPSIS
  Sets up Potluck's node inside WSL2 (first run on Windows).

.DESCRIPTION
  hivemind, and so Potluck's node, does not run natively on Windows. The Windows GUI runs natively and starts the
  node inside a WSL2 distribution called "Potluck" through the same stdio protocol:
      wsl.exe -d Potluck -- potluck node
  This script makes that command work:
    1. checks that WSL is there and enabled (`wsl --status`); if not, asks to enable it (one UAC prompt; Windows then
       needs a restart, after which this script is run again: the installer's Start-menu entry does that);
    2. creates the "Potluck" distribution (Debian) if it does not exist yet;
    3. installs Python inside it, a virtual environment in /opt/potluck-node with PyTorch (CUDA when an NVIDIA GPU is
       visible through WSL, CPU otherwise) and Potluck's node from the wheel shipped with the installer;
    4. links /usr/local/bin/potluck and checks that `potluck --help` runs.
  Safe to run again: each step is skipped when already done.

  Exit codes: 0 ready; 1 failed (the message says why); 3010 Windows must restart to finish enabling WSL.

.PARAMETER Wheel
  A potluck-*.whl file, or a folder holding one (the installer passes {app}\wsl).

.PARAMETER Torch
  auto (default), cpu or cuda.

.PARAMETER CheckOnly
  Only report whether the node is ready (exit 0) or not (exit 1); change nothing.
#>
[CmdletBinding()]
param(
    [string]$Wheel = $PSScriptRoot,
    [ValidateSet("auto", "cpu", "cuda")][string]$Torch = "auto",
    [string]$Distro = "Potluck",
    [string]$Location = (Join-Path $env:LOCALAPPDATA "Potluck\wsl"),
    [switch]$CheckOnly
)

$ErrorActionPreference = "Stop"
$env:WSL_UTF8 = "1"  # wsl.exe otherwise prints UTF-16, which PowerShell 5 reads as text with NULs

function Say([string]$Text) { Write-Host "[Potluck] $Text" }
function Fail([string]$Text) {
    Write-Host "[Potluck] ERROR: $Text" -ForegroundColor Red
    if (-not $CheckOnly) { Read-Host "Press Enter to close" | Out-Null }
    exit 1
}
function Invoke-Wsl([string[]]$Arguments) {
    $output = & wsl.exe @Arguments 2>&1 | Out-String
    return @{ Code = $LASTEXITCODE; Output = ($output -replace "`0", "").Trim() }
}
function Invoke-InDistro([string]$Script, [string]$User = "root") {
    & wsl.exe -d $Distro -u $User -- sh -c $Script
    if ($LASTEXITCODE -ne 0) { Fail "this step failed inside WSL (exit $LASTEXITCODE): $Script" }
}

# 1. WSL present and enabled ------------------------------------------------------------------------------------
if (-not (Get-Command wsl.exe -ErrorAction SilentlyContinue)) {
    Fail "WSL is not available on this Windows. Potluck's node needs Windows 10 version 2004 or later, or Windows 11."
}
$status = Invoke-Wsl @("--status")
if ($status.Code -ne 0) {
    if ($CheckOnly) { Say "WSL is not enabled."; exit 1 }
    Say "WSL2 is not enabled yet. Potluck runs its node inside WSL2 (a small Linux that Windows manages)."
    Say "Windows will ask for permission once; afterwards it must restart."
    $proc = Start-Process -FilePath wsl.exe -ArgumentList "--install", "--no-distribution" -Verb RunAs -Wait -PassThru
    if ($proc.ExitCode -ne 0) { Fail "enabling WSL failed (exit $($proc.ExitCode)). Try 'wsl --install' in an administrator terminal." }
    Say "WSL is enabled. Restart Windows, then open 'Potluck - set up the node in WSL2' from the Start menu."
    Read-Host "Press Enter to close" | Out-Null
    exit 3010
}
& wsl.exe --set-default-version 2 | Out-Null

# 2. The "Potluck" distribution -----------------------------------------------------------------------------------
$distros = (Invoke-Wsl @("--list", "--quiet")).Output -split "\r?\n" | ForEach-Object { $_.Trim() }
if ($distros -notcontains $Distro) {
    if ($CheckOnly) { Say "The $Distro distribution does not exist yet."; exit 1 }
    Say "Creating the WSL2 distribution '$Distro' (Debian) in $Location ..."
    New-Item -ItemType Directory -Force -Path $Location | Out-Null
    $made = Invoke-Wsl @("--install", "Debian", "--name", $Distro, "--location", $Location, "--no-launch")
    if ($made.Code -ne 0) {
        Say "This WSL is too old to name a distribution; updating WSL and trying again ..."
        & wsl.exe --update | Out-Null
        $made = Invoke-Wsl @("--install", "Debian", "--name", $Distro, "--location", $Location, "--no-launch")
    }
    if ($made.Code -ne 0) { Fail "could not create the '$Distro' distribution: $($made.Output)" }
}

# 3. Python, PyTorch and the node ---------------------------------------------------------------------------------
$ready = (Invoke-Wsl @("-d", $Distro, "--", "sh", "-c", "command -v potluck && potluck --help")).Code -eq 0
if ($CheckOnly) {
    if ($ready) { Say "The node is ready in WSL2 ('$Distro')."; exit 0 }
    Say "The '$Distro' distribution exists but the node is not installed."; exit 1
}

if (Test-Path $Wheel -PathType Container) {
    $Wheel = Get-ChildItem -Path $Wheel -Filter "potluck-*.whl" | Sort-Object LastWriteTime | Select-Object -Last 1 -ExpandProperty FullName
}
if (-not $Wheel -or -not (Test-Path $Wheel -PathType Leaf)) { Fail "no potluck-*.whl found next to this script: reinstall Potluck" }
$wheelInWsl = (& wsl.exe -d $Distro -- wslpath -a ($Wheel -replace "\\", "/")).Trim()

if ($Torch -eq "auto") {
    $gpu = (Invoke-Wsl @("-d", $Distro, "--", "sh", "-c", "test -e /usr/lib/wsl/lib/nvidia-smi && /usr/lib/wsl/lib/nvidia-smi -L")).Code -eq 0
    $Torch = if ($gpu) { "cuda" } else { "cpu" }
}
$torchIndex = if ($Torch -eq "cpu") { "--index-url https://download.pytorch.org/whl/cpu" } else { "" }
Say "Installing Python, PyTorch ($Torch) and the Potluck node inside '$Distro'; this downloads a few GB ..."
Invoke-InDistro "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q python3 python3-venv python3-pip ca-certificates"
Invoke-InDistro "test -x /opt/potluck-node/bin/python || python3 -m venv /opt/potluck-node"
Invoke-InDistro "/opt/potluck-node/bin/pip install -q --upgrade pip && /opt/potluck-node/bin/pip install -q torch $torchIndex"
Invoke-InDistro "/opt/potluck-node/bin/pip install -q --upgrade '$wheelInWsl'"
Invoke-InDistro "ln -sf /opt/potluck-node/bin/potluck /usr/local/bin/potluck"

# 4. Check ------------------------------------------------------------------------------------------------------
& wsl.exe -d $Distro -- potluck --help | Out-Null
if ($LASTEXITCODE -ne 0) { Fail "the node was installed but 'potluck --help' fails inside '$Distro'" }
Say "Done: the Potluck node is ready in WSL2 ('$Distro'). The Potluck app starts it by itself."
exit 0
