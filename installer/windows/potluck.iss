; Inno Setup 6 script: a per-user Potluck install (no administrator rights), with a start-at-sign-in option.
;
;   iscc /DAppVersion=X.Y.Z installer\windows\potluck.iss      (from the repository root; see build_installer.ps1)
;
; Inputs: dist\potluck\ (python packaging\build.py --flavour gui: the GUI alone), dist\wheel\potluck-*.whl (the
; node, installed into WSL2 by setup_wsl.ps1), resources\potluck.ico. Output: dist\potluck-setup-<version>.exe.
; hivemind does not run on Windows: the GUI runs natively and drives the node inside the WSL2 distribution
; "Potluck" through the same stdio protocol (wsl.exe -d Potluck -- potluck node).

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z (build_installer.ps1 reads it from core\__init__.py)
#endif
#define AppName "Potluck"
#define AppExe "potluck.exe"
#define WslDistro "Potluck"

[Setup]
AppId={{6C1E4F52-8B7A-4E0B-9D47-2B8A51C0F7A3}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Potluck developers
VersionInfoVersion={#AppVersion}
PrivilegesRequired=lowest
DefaultDirName={autopf}\{#AppName}
DisableDirPage=auto
DisableProgramGroupPage=yes
DefaultGroupName={#AppName}
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
SetupIconFile=..\..\resources\potluck.ico
OutputDir=..\..\dist
OutputBaseFilename=potluck-setup-{#AppVersion}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0.19041
CloseApplications=yes
RestartApplications=no

[Tasks]
Name: "startup"; Description: "Start Potluck when I sign in"; GroupDescription: "Startup:"
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "..\..\dist\potluck\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs
Source: "..\..\resources\potluck.ico"; DestDir: "{app}"; Flags: ignoreversion
Source: "setup_wsl.ps1"; DestDir: "{app}\wsl"; Flags: ignoreversion
Source: "..\..\dist\wheel\potluck-*.whl"; DestDir: "{app}\wsl"; Flags: ignoreversion

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; IconFilename: "{app}\potluck.ico"
Name: "{autoprograms}\{#AppName} - set up the node in WSL2"; Filename: "powershell.exe"; Parameters: "-NoProfile -ExecutionPolicy Bypass -File ""{app}\wsl\setup_wsl.ps1"""; IconFilename: "{app}\potluck.ico"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; IconFilename: "{app}\potluck.ico"; Tasks: desktopicon

[Registry]
; Start at sign-in: the per-user Run key, removed again by the uninstaller. The app's own setting writes the same value.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "{#AppName}"; ValueData: """{app}\{#AppExe}"""; Flags: uninsdeletevalue; Tasks: startup

[Run]
Filename: "powershell.exe"; Parameters: "-NoProfile -ExecutionPolicy Bypass -File ""{app}\wsl\setup_wsl.ps1"" -Wheel ""{app}\wsl"""; Description: "Set up the Potluck node in WSL2 now (downloads Linux and PyTorch, a few GB)"; Flags: postinstall skipifsilent
Filename: "{app}\{#AppExe}"; Description: "Start Potluck"; Flags: postinstall nowait skipifsilent

[UninstallDelete]
Type: filesandordirs; Name: "{app}"

[Code]
// On uninstall, offer to remove the WSL2 distribution too: it holds the node and any downloaded model files.
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  ResultCode: Integer;
begin
  if (CurUninstallStep = usUninstall) and not UninstallSilent then
  begin
    if MsgBox('Also remove the Potluck node from WSL2 (the "{#WslDistro}" distribution and the model files ' +
              'it downloaded)?', mbConfirmation, MB_YESNO or MB_DEFBUTTON2) = IDYES then
      Exec(ExpandConstant('{sys}\wsl.exe'), '--unregister {#WslDistro}', '', SW_HIDE, ewWaitUntilTerminated,
           ResultCode);
  end;
end;
