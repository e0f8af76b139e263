; m6t for Windows: installs the PyInstaller output to "Program Files\m6t", registers the helper as the
; "m6t-helper" service (what the tray's hint names: sc start m6t-helper), and starts the tray at login.
;
; Build with installers/windows/build-installer.sh, or directly:
;   makensis -DVERSION=0.1.0 -DVERSION_QUAD=0.1.0.0 -DARCH=amd64 -DDIST=<dist\pyinstaller> -DROOT=<repository> m6t.nsi
; DIST holds what scripts/build-pyinstaller.sh made: m6t-helper\ (m6t-helper.exe, m6t.exe, _internal\)
; and m6t-tray\ (m6t-tray.exe, _tray\).  ARCH is the processor those programs are built for.
;
; Wintun: installers/windows/stage_wintun.py puts wintun.dll (and its license, wintun-LICENSE.txt) next
; to m6t-helper.exe: Wintun's official, signed DLL for ARCH, unmodified, taken from the wheel pinned by
; sha256 in installers/windows/wintun.toml; build-installer.sh checks it against those pins again.  Its
; license allows redistributing that DLL as is.  The helper loads it from its own folder
; (or System32), never from the current directory or PATH.
;
; Configuration and state live in %ProgramData%\m6t, readable by users and writable only by SYSTEM and
; Administrators: the service runs as LocalSystem and trusts what it reads there.

Unicode true
ManifestDPIAware true
RequestExecutionLevel admin
SetCompressor /SOLID lzma

!ifndef VERSION
  !error "define VERSION (e.g. -DVERSION=0.1.0); installers/windows/build-installer.sh does"
!endif
!ifndef VERSION_QUAD
  !error "define VERSION_QUAD, four numbers for the file properties (e.g. -DVERSION_QUAD=0.1.0.0)"
!endif
!ifndef ARCH
  !error "define ARCH, the processor the programs are built for (amd64 or arm64); build-installer.sh does"
!endif
!if "${ARCH}" != "amd64"
!if "${ARCH}" != "arm64"
  !error "ARCH=${ARCH}: the installer is made for 64-bit Windows on amd64 or arm64 only"
!endif
!endif
!ifndef DIST
  !error "define DIST, the PyInstaller output folder (dist\pyinstaller)"
!endif
!ifndef ROOT
  !error "define ROOT, the repository (for the icon and the example configuration)"
!endif
!ifndef OUTFILE
  !define OUTFILE "m6t-${VERSION}-setup.exe"
!endif

!if ! /FileExists "${DIST}\m6t-helper\m6t-helper.exe"
  !error "${DIST}\m6t-helper\m6t-helper.exe is missing: run scripts/build-pyinstaller.sh on Windows first"
!endif
!if ! /FileExists "${DIST}\m6t-tray\m6t-tray.exe"
  !error "${DIST}\m6t-tray\m6t-tray.exe is missing: run scripts/build-pyinstaller.sh on Windows first"
!endif
!if ! /FileExists "${DIST}\m6t-helper\wintun.dll"
  !error "${DIST}\m6t-helper\wintun.dll is missing: stage it with installers/windows/stage_wintun.py"
!endif

!define SERVICE "m6t-helper"
!define SERVICE_DISPLAY "m6t helper"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\m6t"
; The tray's own "start at login" setting reads and writes this value (m6t.ui.autostart.RunKeyAutostart):
; the same key, name and quoting, so that its checkbox shows and controls what the installer set.
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define RUN_VALUE "m6t-tray"
!define PROFILE_LIST "SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList"
; Where the uninstaller loads, for a moment, the registry hive of a user who is not logged on.
!define BORROWED_HIVE "m6t-uninstall"

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "x64.nsh"
!include "FileFunc.nsh"

Name "m6t"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\m6t"
BrandingText "m6t ${VERSION}"

VIProductVersion "${VERSION_QUAD}"
VIAddVersionKey "ProductName" "m6t"
VIAddVersionKey "FileDescription" "m6t installer"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "LegalCopyright" "the m6t authors, BSD-2-Clause"

!define MUI_ICON "${ROOT}\assets\m6t.ico"
!define MUI_UNICON "${ROOT}\assets\m6t.ico"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN
!define MUI_FINISHPAGE_RUN_TEXT "Start the m6t tray"
!define MUI_FINISHPAGE_RUN_FUNCTION StartTrayUnelevated

!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Var DataDir

Function .onInit
  ; The programs and the Wintun driver (which wintun.dll carries) are built for one processor: an
  ; amd64 driver does not load on arm64 Windows, which only emulates amd64 programs.
  !if "${ARCH}" == "amd64"
    ${IfNot} ${IsNativeAMD64}
  !else
    ${IfNot} ${IsNativeARM64}
  !endif
    MessageBox MB_ICONSTOP "This m6t installer is for Windows on ${ARCH} processors." /SD IDOK
    Abort
  ${EndIf}
  SetRegView 64
  SetShellVarContext all
FunctionEnd

Function un.onInit
  SetRegView 64
  SetShellVarContext all
FunctionEnd

; The installer runs elevated; the tray must run as the user (its settings, its autostart value), so
; it is started by Explorer, which runs unelevated.
Function StartTrayUnelevated
  Exec '"$WINDIR\explorer.exe" "$INSTDIR\m6t-tray.exe"'
FunctionEnd

!macro StopHelperAndTray
  ; "net stop" waits for the service to stop; the helper takes the tunnel down on the way.
  nsExec::ExecToLog 'net.exe stop ${SERVICE}'
  Pop $0
  ; Running trays hold their files open; they reconnect to the new helper once restarted.
  nsExec::ExecToLog 'taskkill.exe /F /IM m6t-tray.exe'
  Pop $0
!macroend

Section "m6t" SecMain
  SectionIn RO
  !insertmacro StopHelperAndTray

  SetOutPath "$INSTDIR"
  ; Replace the programs wholesale: a stale module left by an older version would be loaded.
  RMDir /r "$INSTDIR\_internal"
  RMDir /r "$INSTDIR\_tray"
  File /r "${DIST}\m6t-helper\*.*"
  File /r "${DIST}\m6t-tray\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  ; Configuration and state, locked down before anything is written there: ProgramData lets every
  ; user create files, and a service running as SYSTEM must not read what a user put in its place.
  ; SIDs, not names, which are translated: S-1-5-18 SYSTEM, S-1-5-32-544 Administrators,
  ; S-1-5-32-545 Users.
  ; $APPDATA is %ProgramData% here: .onInit set the all-users context.
  StrCpy $DataDir "$APPDATA\m6t"
  CreateDirectory "$DataDir"
  nsExec::ExecToLog 'icacls.exe "$DataDir" /setowner *S-1-5-32-544 /T /C /Q'
  Pop $0
  nsExec::ExecToLog 'icacls.exe "$DataDir" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F *S-1-5-32-545:(OI)(CI)RX /T /C /Q'
  Pop $0
  ${If} $0 != 0
    MessageBox MB_ICONSTOP "Could not restrict the permissions of $DataDir (icacls exit status $0)." /SD IDOK
    Abort
  ${EndIf}
  CreateDirectory "$DataDir\state"
  SetOutPath "$DataDir"
  File "/oname=client.example.toml" "${ROOT}\installers\linux\client.example.toml"
  ; Never overwritten: the helper rewrites it when operators change settings.
  ${IfNot} ${FileExists} "$DataDir\client.toml"
    CopyFiles /SILENT "$DataDir\client.example.toml" "$DataDir\client.toml"
  ${EndIf}
  SetOutPath "$INSTDIR"

  ; The service, created or updated in place (deleting and re-creating fails while any program,
  ; services.msc included, holds a handle to it).
  StrCpy $1 'binPath= "\"$INSTDIR\m6t-helper.exe\" --config \"$DataDir\client.toml\" --state-dir \"$DataDir\state\" --service" start= auto DisplayName= "${SERVICE_DISPLAY}"'
  nsExec::ExecToLog 'sc.exe query ${SERVICE}'
  Pop $0
  ${If} $0 == 0
    nsExec::ExecToLog 'sc.exe config ${SERVICE} $1'
  ${Else}
    nsExec::ExecToLog 'sc.exe create ${SERVICE} $1'
  ${EndIf}
  Pop $0
  ${If} $0 != 0
    MessageBox MB_ICONSTOP "Could not register the ${SERVICE} service (sc.exe exit status $0)." /SD IDOK
    Abort
  ${EndIf}
  nsExec::ExecToLog 'sc.exe description ${SERVICE} "m6t: IPv6 to a Mobile IPv6 Home Agent over UDP/IPv4. Owns the tunnel; the m6t tray and CLI control it."'
  Pop $0
  ; Restart after a crash, as systemd (Restart=on-failure) and launchd (KeepAlive) do elsewhere.
  nsExec::ExecToLog 'sc.exe failure ${SERVICE} reset= 86400 actions= restart/2000/restart/5000/restart/30000'
  Pop $0
  nsExec::ExecToLog 'sc.exe start ${SERVICE}'
  Pop $0
  ${If} $0 != 0
    DetailPrint "The ${SERVICE} service did not start (sc.exe exit status $0); see the Windows event log."
  ${EndIf}

  CreateShortcut "$SMPROGRAMS\m6t.lnk" "$INSTDIR\m6t-tray.exe" "" "$INSTDIR\m6t-tray.exe" 0
  WriteRegStr HKCU "${RUN_KEY}" "${RUN_VALUE}" '"$INSTDIR\m6t-tray.exe"'

  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayName" "m6t"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "Publisher" "the m6t authors"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\m6t-tray.exe"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKLM "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  IntFmt $0 "0x%08X" $0
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "EstimatedSize" "$0"
SectionEnd

; The tray's "start at login" value of every user, not only of whoever uninstalls: the installer wrote
; it for the installing user, and the tray's checkbox writes it in the hive of each user who ticks it
; (m6t.ui.autostart.RunKeyAutostart).  The hives of users logged on are under HKEY_USERS already; the
; others are loaded from their NTUSER.DAT for the time it takes to delete the value.
Function un.RemoveEveryRunValue
  DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"
  StrCpy $R0 0
  ${Do}
    EnumRegKey $R1 HKLM "${PROFILE_LIST}" $R0
    ${IfThen} $R1 == "" ${|} ${ExitDo} ${|}
    IntOp $R0 $R0 + 1
    ClearErrors
    EnumRegKey $R2 HKU "$R1" 0
    ${IfNot} ${Errors}
      DeleteRegValue HKU "$R1\${RUN_KEY}" "${RUN_VALUE}"
      ${Continue}
    ${EndIf}
    ReadRegStr $R2 HKLM "${PROFILE_LIST}\$R1" "ProfileImagePath"
    ExpandEnvStrings $R2 $R2
    ${IfNot} ${FileExists} "$R2\NTUSER.DAT"
      ${Continue}
    ${EndIf}
    nsExec::ExecToLog 'reg.exe load "HKU\${BORROWED_HIVE}" "$R2\NTUSER.DAT"'
    Pop $R3
    ${If} $R3 == 0
      DeleteRegValue HKU "${BORROWED_HIVE}\${RUN_KEY}" "${RUN_VALUE}"
      nsExec::ExecToLog 'reg.exe unload "HKU\${BORROWED_HIVE}"'
      Pop $R3
    ${EndIf}
  ${Loop}
FunctionEnd

Section "Uninstall"
  ; Stopping the service takes the tunnel down: the helper closes its Wintun adapter, which removes it.
  !insertmacro StopHelperAndTray
  nsExec::ExecToLog 'sc.exe delete ${SERVICE}'
  Pop $0

  Delete "$SMPROGRAMS\m6t.lnk"
  Call un.RemoveEveryRunValue
  DeleteRegKey HKLM "${UNINSTALL_KEY}"

  ; Only what the installer put there: INSTDIR may have been chosen as an existing folder.
  Delete "$INSTDIR\m6t-helper.exe"
  Delete "$INSTDIR\m6t.exe"
  Delete "$INSTDIR\m6t-tray.exe"
  Delete "$INSTDIR\wintun.dll"
  Delete "$INSTDIR\wintun-LICENSE.txt"
  RMDir /r "$INSTDIR\_internal"
  RMDir /r "$INSTDIR\_tray"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"

  MessageBox MB_YESNO|MB_ICONQUESTION "Also remove the m6t configuration and state in $APPDATA\m6t?" /SD IDNO IDNO keep
    RMDir /r "$APPDATA\m6t"
  keep:
SectionEnd
