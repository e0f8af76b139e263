<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="fr_FR">
<context>
    <name>AccessBox</name>
    <message>
        <source>Enrolled access (gateways that serve known computers only)</source>
        <translation>Accès enrôlé (passerelles qui ne servent que des ordinateurs connus)</translation>
    </message>
    <message>
        <source>The name the gateway&apos;s administrator gave this computer</source>
        <translation>Le nom que l’administrateur de la passerelle a donné à cet ordinateur</translation>
    </message>
    <message>
        <source>The key the administrator handed you (44 characters); never shown</source>
        <translation>La clé que l’administrateur vous a remise (44 caractères) ; jamais affichée</translation>
    </message>
    <message>
        <source>St&amp;ore key</source>
        <translation>Enregistrer la cl&amp;é</translation>
    </message>
    <message>
        <source>Ke&amp;y name:</source>
        <translation>Nom de la clé (&amp;y) :</translation>
    </message>
    <message>
        <source>Acc&amp;ess key:</source>
        <translation>Clé d’acc&amp;ès :</translation>
    </message>
    <message>
        <source>Hands the key to the helper, which keeps it in its keyring (or your keyring keeps it)</source>
        <translation>Remet la clé au service, qui la garde dans son trousseau (ou votre trousseau la garde)</translation>
    </message>
    <message>
        <source>Access key result</source>
        <translation>Résultat de la clé d’accès</translation>
    </message>
    <message>
        <source>What became of the last key stored</source>
        <translation>Ce qu’il est advenu de la dernière clé enregistrée</translation>
    </message>
    <message>
        <source>The key name is letters, digits, &apos;.&apos;, &apos;_&apos; or &apos;-&apos;.</source>
        <translation>Le nom de la clé est fait de lettres, de chiffres, de « . », « _ » ou « - ».</translation>
    </message>
    <message>
        <source>That is {problem}.</source>
        <translation>Ce n’est pas une clé valable : {problem}.</translation>
    </message>
    <message>
        <source>Key {fingerprint} stored in your keyring.</source>
        <translation>Clé {fingerprint} enregistrée dans votre trousseau.</translation>
    </message>
    <message>
        <source>Key {fingerprint} stored in the helper&apos;s {where}.</source>
        <translation>Clé {fingerprint} enregistrée par le service ({where}).</translation>
    </message>
    <message>
        <source>Your desktop has no keyring to keep it in either.</source>
        <translation>Votre bureau n’a pas non plus de trousseau où la garder.</translation>
    </message>
</context>
<context>
    <name>HelperConnection</name>
    <message>
        <source>The m6t helper is not running.</source>
        <translation>L’assistant m6t ne fonctionne pas.</translation>
    </message>
    <message>
        <source>The m6t helper is not accepting connections.</source>
        <translation>L’assistant m6t n’accepte pas de connexion.</translation>
    </message>
    <message>
        <source>This user may not open the m6t helper&apos;s socket.</source>
        <translation>Cet utilisateur ne peut pas ouvrir la socket de l’assistant m6t.</translation>
    </message>
    <message>
        <source>The m6t helper closed the connection.</source>
        <translation>L’assistant m6t a fermé la connexion.</translation>
    </message>
    <message>
        <source>The tray stopped talking to the helper.</source>
        <translation>L’icône de notification a cessé de dialoguer avec l’assistant.</translation>
    </message>
    <message>
        <source>The helper is not reachable.</source>
        <translation>L’assistant est injoignable.</translation>
    </message>
    <message>
        <source>The program at the helper&apos;s address is not the m6t helper: {why}</source>
        <translation>Le programme à l’adresse de l’assistant n’est pas l’assistant m6t : {why}</translation>
    </message>
    <message>
        <source>The m6t helper cannot be reached: {error}.</source>
        <translation>L’assistant m6t est injoignable : {error}.</translation>
    </message>
    <message>
        <source>The m6t helper cannot be reached.</source>
        <translation>L’assistant m6t est injoignable.</translation>
    </message>
    <message>
        <source>The program behind the helper&apos;s socket does not speak the m6t control API.</source>
        <translation>Le programme derrière la socket de l’assistant ne parle pas l’API de contrôle de m6t.</translation>
    </message>
    <message>
        <source>The m6t helper speaks control API version {helper}, this tray version {tray}: update one of them.</source>
        <translation>L’assistant m6t parle la version {helper} de l’API de contrôle, cette icône la version {tray} : mettez l’un des deux à jour.</translation>
    </message>
</context>
<context>
    <name>SettingsDialog</name>
    <message>
        <source>Saving asks for an administrator&apos;s password (your desktop&apos;s polkit agent shows the dialog).</source>
        <translation>L’enregistrement demande le mot de passe d’un administrateur (l’agent polkit de votre bureau affiche la fenêtre).</translation>
    </message>
    <message>
        <source>m6t settings</source>
        <translation>Paramètres de m6t</translation>
    </message>
    <message>
        <source>OK</source>
        <translation>OK</translation>
    </message>
    <message>
        <source>Save the settings and close</source>
        <translation>Enregistrer les paramètres et fermer</translation>
    </message>
    <message>
        <source>Apply</source>
        <translation>Appliquer</translation>
    </message>
    <message>
        <source>Save the settings</source>
        <translation>Enregistrer les paramètres</translation>
    </message>
    <message>
        <source>Cancel</source>
        <translation>Annuler</translation>
    </message>
    <message>
        <source>Close without saving</source>
        <translation>Fermer sans enregistrer</translation>
    </message>
    <message>
        <source>{field}: problem</source>
        <translation>{field} : problème</translation>
    </message>
    <message>
        <source>Gateway</source>
        <translation>Passerelle</translation>
    </message>
    <message>
        <source>e.g. 3544, 4500</source>
        <translation>p. ex. 3544, 4500</translation>
    </message>
    <message>
        <source>UDP ports, in the order they are tried when one fails.</source>
        <translation>Ports UDP, dans l’ordre où ils sont essayés quand l’un échoue.</translation>
    </message>
    <message>
        <source>IPv4 address or host name; several: gw1.example.org, 198.51.100.2</source>
        <translation>Adresse IPv4 ou nom d’hôte ; plusieurs : gw1.example.org, 198.51.100.2</translation>
    </message>
    <message>
        <source>Gateways in order of preference: the next one is used when one does not answer.</source>
        <translation>Passerelles par ordre de préférence : la suivante sert quand l’une ne répond pas.</translation>
    </message>
    <message>
        <source>&amp;Addresses (in order):</source>
        <translation>&amp;Adresses (dans l’ordre) :</translation>
    </message>
    <message>
        <source>&amp;Ports (in order):</source>
        <translation>&amp;Ports (dans l’ordre) :</translation>
    </message>
    <message>
        <source>Prefix</source>
        <translation>Préfixe</translation>
    </message>
    <message>
        <source>A /&amp;80 prefix</source>
        <translation>Un préfixe /&amp;80</translation>
    </message>
    <message>
        <source>&amp;ULA /48 + subnet ID + MN ID</source>
        <translation>&amp;ULA /48 + ID de sous-réseau + ID du MN</translation>
    </message>
    <message>
        <source>A /80 prefix</source>
        <translation>Un préfixe /80</translation>
    </message>
    <message>
        <source>Give the tunnel&apos;s /80 prefix whole</source>
        <translation>Donner le préfixe /80 du tunnel en entier</translation>
    </message>
    <message>
        <source>ULA /48 + subnet ID + MN ID</source>
        <translation>ULA /48 + ID de sous-réseau + ID du MN</translation>
    </message>
    <message>
        <source>Build the /80 from a ULA /48, a subnet ID and a mobile node ID</source>
        <translation>Construire le /80 à partir d’un ULA /48, d’un ID de sous-réseau et d’un ID de nœud mobile</translation>
    </message>
    <message>
        <source>/80 pre&amp;fix:</source>
        <translation>Pré&amp;fixe /80 :</translation>
    </message>
    <message>
        <source>The tunnel&apos;s /80 prefix</source>
        <translation>Le préfixe /80 du tunnel</translation>
    </message>
    <message>
        <source>&amp;Generate ULA</source>
        <translation>&amp;Générer un ULA</translation>
    </message>
    <message>
        <source>A new random ULA /48 by RFC 4193 (time and a local MAC, hashed).</source>
        <translation>Un nouvel ULA /48 aléatoire selon la RFC 4193 (l’heure et une adresse MAC locale, hachées).</translation>
    </message>
    <message>
        <source>Generate ULA</source>
        <translation>Générer un ULA</translation>
    </message>
    <message>
        <source>ULA /48</source>
        <translation>ULA /48</translation>
    </message>
    <message>
        <source>The ULA /48 and a button to draw a new one</source>
        <translation>L’ULA /48 et un bouton pour en tirer un nouveau</translation>
    </message>
    <message>
        <source>U&amp;LA /48:</source>
        <translation>U&amp;LA /48 :</translation>
    </message>
    <message>
        <source>A unique local /48 (RFC 4193)</source>
        <translation>Un /48 local unique (RFC 4193)</translation>
    </message>
    <message>
        <source>&amp;Subnet ID:</source>
        <translation>ID de &amp;sous-réseau :</translation>
    </message>
    <message>
        <source>The subnet ID inside the /48</source>
        <translation>L’ID du sous-réseau dans le /48</translation>
    </message>
    <message>
        <source>&amp;MN ID:</source>
        <translation>ID du &amp;MN :</translation>
    </message>
    <message>
        <source>This mobile node&apos;s ID in the subnet</source>
        <translation>L’ID de ce nœud mobile dans le sous-réseau</translation>
    </message>
    <message>
        <source>Resulting /80</source>
        <translation>/80 obtenu</translation>
    </message>
    <message>
        <source>The /80 prefix these values make</source>
        <translation>Le préfixe /80 que donnent ces valeurs</translation>
    </message>
    <message>
        <source>Resulting /80:</source>
        <translation>/80 obtenu :</translation>
    </message>
    <message>
        <source>Tunnel</source>
        <translation>Tunnel</translation>
    </message>
    <message>
        <source> bytes</source>
        <translation> octets</translation>
    </message>
    <message>
        <source>M&amp;TU:</source>
        <translation>M&amp;TU :</translation>
    </message>
    <message>
        <source>The largest IPv6 packet the tunnel carries</source>
        <translation>Le plus grand paquet IPv6 que le tunnel transporte</translation>
    </message>
    <message>
        <source>&amp;Keepalive interval:</source>
        <translation>Intervalle de &amp;keepalive :</translation>
    </message>
    <message>
        <source>How long the tunnel may be silent before a keepalive keeps the NAT mapping open</source>
        <translation>Combien de temps le tunnel peut rester silencieux avant qu’un keepalive ne garde l’association NAT ouverte</translation>
    </message>
    <message>
        <source>Routes</source>
        <translation>Routes</translation>
    </message>
    <message>
        <source>Route all &amp;IPv6 (::/0) through the tunnel</source>
        <translation>Faire passer tout l’&amp;IPv6 (::/0) par le tunnel</translation>
    </message>
    <message>
        <source>One IPv6 prefix per line, e.g. fd00:ab::/64</source>
        <translation>Un préfixe IPv6 par ligne, p. ex. fd00:ab::/64</translation>
    </message>
    <message>
        <source>Default route:</source>
        <translation>Route par défaut :</translation>
    </message>
    <message>
        <source>Send all IPv6 traffic through the tunnel</source>
        <translation>Envoyer tout le trafic IPv6 par le tunnel</translation>
    </message>
    <message>
        <source>Metri&amp;c:</source>
        <translation>Métri&amp;que :</translation>
    </message>
    <message>
        <source>The routes&apos; metric: lower wins</source>
        <translation>La métrique des routes : la plus basse l’emporte</translation>
    </message>
    <message>
        <source>E&amp;xtra prefixes:</source>
        <translation>Préfi&amp;xes supplémentaires :</translation>
    </message>
    <message>
        <source>More IPv6 prefixes to route through the tunnel, one per line</source>
        <translation>D’autres préfixes IPv6 à router par le tunnel, un par ligne</translation>
    </message>
    <message>
        <source>This desktop</source>
        <translation>Ce bureau</translation>
    </message>
    <message>
        <source>Start the m6t tray &amp;when I log in</source>
        <translation>Lancer l’icône m6t à l’ou&amp;verture de session</translation>
    </message>
    <message>
        <source>This desktop has no start-at-login mechanism m6t knows.</source>
        <translation>Ce bureau n’a aucun mécanisme de lancement à l’ouverture de session que m6t connaisse.</translation>
    </message>
    <message>
        <source>Start at login:</source>
        <translation>Lancement à la connexion :</translation>
    </message>
    <message>
        <source>Whether the tray starts with your desktop session</source>
        <translation>Si l’icône se lance avec votre session de bureau</translation>
    </message>
    <message>
        <source>Notifications</source>
        <translation>Notifications</translation>
    </message>
    <message>
        <source>Which events the tray tells you about</source>
        <translation>Les événements que l’icône vous signale</translation>
    </message>
    <message>
        <source>&amp;Notifications:</source>
        <translation>&amp;Notifications :</translation>
    </message>
    <message>
        <source>The helper is not reachable, so its settings cannot be changed now. {why}</source>
        <translation>L’assistant est injoignable, ses réglages ne peuvent donc pas être modifiés maintenant. {why}</translation>
    </message>
    <message>
        <source>Reading the configuration from the helper…</source>
        <translation>Lecture de la configuration auprès de l’assistant…</translation>
    </message>
    <message>
        <source>Saved.</source>
        <translation>Enregistré.</translation>
    </message>
    <message>
        <source>Waiting for an administrator&apos;s password…</source>
        <translation>En attente du mot de passe d’un administrateur…</translation>
    </message>
    <message>
        <source>Applying…</source>
        <translation>Application…</translation>
    </message>
    <message>
        <source>nothing</source>
        <translation>rien</translation>
    </message>
    <message>
        <source>Applied (changed: {changed}).</source>
        <translation>Appliqué (modifié : {changed}).</translation>
    </message>
    <message>
        <source>Could not change it: {why}</source>
        <translation>Impossible de le modifier : {why}</translation>
    </message>
</context>
<context>
    <name>StatusWindow</name>
    <message>
        <source>{clock} ({duration} ago)</source>
        <translation>{clock} (il y a {duration})</translation>
    </message>
    <message>
        <source>off</source>
        <translation>désactivée</translation>
    </message>
    <message>
        <source>path under 1308 bytes: 1280 kept, larger packets rely on fragmentation</source>
        <translation>chemin sous 1308 octets : 1280 conservé, les paquets plus grands comptent sur la fragmentation</translation>
    </message>
    <message>
        <source>searching…</source>
        <translation>recherche en cours…</translation>
    </message>
    <message>
        <source>not yet (waits for the tunnel)</source>
        <translation>pas encore (attend le tunnel)</translation>
    </message>
    <message>
        <source>1 probe</source>
        <translation>1 sonde</translation>
    </message>
    <message>
        <source>{count} probes</source>
        <translation>{count} sondes</translation>
    </message>
    <message>
        <source>{mtu} bytes ({found}, {probes})</source>
        <translation>{mtu} octets ({found}, {probes})</translation>
    </message>
    <message>
        <source>{mtu} bytes at {clock} ({found}, {probes})</source>
        <translation>{mtu} octets à {clock} ({found}, {probes})</translation>
    </message>
    <message>
        <source>m6t status</source>
        <translation>État de m6t</translation>
    </message>
    <message>
        <source>Notice</source>
        <translation>Avis</translation>
    </message>
    <message>
        <source>Why some controls are unavailable</source>
        <translation>Pourquoi certaines commandes sont indisponibles</translation>
    </message>
    <message>
        <source>Result</source>
        <translation>Résultat</translation>
    </message>
    <message>
        <source>The outcome of the last action</source>
        <translation>Le résultat de la dernière action</translation>
    </message>
    <message>
        <source>&amp;Status</source>
        <translation>É&amp;tat</translation>
    </message>
    <message>
        <source>C&amp;ounters</source>
        <translation>C&amp;ompteurs</translation>
    </message>
    <message>
        <source>Address &amp;history</source>
        <translation>&amp;Historique des adresses</translation>
    </message>
    <message>
        <source>&amp;Log</source>
        <translation>&amp;Journal</translation>
    </message>
    <message>
        <source>Views</source>
        <translation>Vues</translation>
    </message>
    <message>
        <source>Choose what the window shows (Ctrl+Tab)</source>
        <translation>Choisir ce que la fenêtre affiche (Ctrl+Tab)</translation>
    </message>
    <message>
        <source>Helper</source>
        <translation>Assistant</translation>
    </message>
    <message>
        <source>The helper this window talks to</source>
        <translation>L’assistant avec lequel cette fenêtre dialogue</translation>
    </message>
    <message>
        <source>State icon</source>
        <translation>Icône d’état</translation>
    </message>
    <message>
        <source>The tray icon of the tunnel&apos;s state</source>
        <translation>L’icône de notification de l’état du tunnel</translation>
    </message>
    <message>
        <source>Tunnel state</source>
        <translation>État du tunnel</translation>
    </message>
    <message>
        <source>What the tunnel is doing</source>
        <translation>Ce que fait le tunnel</translation>
    </message>
    <message>
        <source>Tunnel address</source>
        <translation>Adresse du tunnel</translation>
    </message>
    <message>
        <source>The tunnel address and time connected</source>
        <translation>L’adresse du tunnel et la durée de connexion</translation>
    </message>
    <message>
        <source>&amp;Connect</source>
        <translation>Se &amp;connecter</translation>
    </message>
    <message>
        <source>Connect or disconnect</source>
        <translation>Se connecter ou se déconnecter</translation>
    </message>
    <message>
        <source>Bring the tunnel up or down</source>
        <translation>Établir ou couper le tunnel</translation>
    </message>
    <message>
        <source>&amp;MTU probe</source>
        <translation>Mesurer la &amp;MTU</translation>
    </message>
    <message>
        <source>MTU probe</source>
        <translation>Mesure de la MTU</translation>
    </message>
    <message>
        <source>Measure the largest packet the tunnel carries now</source>
        <translation>Mesurer le plus grand paquet que le tunnel transporte maintenant</translation>
    </message>
    <message>
        <source>E&amp;xport diagnostics…</source>
        <translation>E&amp;xporter les diagnostics…</translation>
    </message>
    <message>
        <source>Export diagnostics</source>
        <translation>Exporter les diagnostics</translation>
    </message>
    <message>
        <source>Save everything the helper knows to a file, for a bug report</source>
        <translation>Enregistrer tout ce que sait l’assistant dans un fichier, pour un rapport de bogue</translation>
    </message>
    <message>
        <source>Attachment</source>
        <translation>Rattachement</translation>
    </message>
    <message>
        <source>Egress IPv4:</source>
        <translation>IPv4 de sortie :</translation>
    </message>
    <message>
        <source>Interface:</source>
        <translation>Interface :</translation>
    </message>
    <message>
        <source>Router:</source>
        <translation>Routeur :</translation>
    </message>
    <message>
        <source>Tunnel</source>
        <translation>Tunnel</translation>
    </message>
    <message>
        <source>Gateway:</source>
        <translation>Passerelle :</translation>
    </message>
    <message>
        <source>Tunnel address:</source>
        <translation>Adresse du tunnel :</translation>
    </message>
    <message>
        <source>Generated:</source>
        <translation>Générée :</translation>
    </message>
    <message>
        <source>MTU</source>
        <translation>MTU</translation>
    </message>
    <message>
        <source>Configured:</source>
        <translation>Configurée :</translation>
    </message>
    <message>
        <source>Effective:</source>
        <translation>Effective :</translation>
    </message>
    <message>
        <source>Path search:</source>
        <translation>Recherche du chemin :</translation>
    </message>
    <message>
        <source>Last evidence:</source>
        <translation>Dernier indice :</translation>
    </message>
    <message>
        <source>Last probe:</source>
        <translation>Dernière mesure :</translation>
    </message>
    <message>
        <source>Keepalive</source>
        <translation>Keepalive</translation>
    </message>
    <message>
        <source>Interval:</source>
        <translation>Intervalle :</translation>
    </message>
    <message>
        <source>Last sent:</source>
        <translation>Dernier envoi :</translation>
    </message>
    <message>
        <source>Last reply:</source>
        <translation>Dernière réponse :</translation>
    </message>
    <message>
        <source>Round trip:</source>
        <translation>Aller-retour :</translation>
    </message>
    <message>
        <source>Missed:</source>
        <translation>Manqués :</translation>
    </message>
    <message>
        <source>Keepalive round trip</source>
        <translation>Aller-retour des keepalives</translation>
    </message>
    <message>
        <source>RTT</source>
        <translation>RTT</translation>
    </message>
    <message>
        <source>&amp;Tunnels</source>
        <translation>T&amp;unnels</translation>
    </message>
    <message>
        <source>Status, tunnels, counters, address history and log</source>
        <translation>État, tunnels, compteurs, historique des adresses et journal</translation>
    </message>
    <message>
        <source>Interface</source>
        <translation>Interface</translation>
    </message>
    <message>
        <source>Uplink</source>
        <translation>Liaison montante</translation>
    </message>
    <message>
        <source>State</source>
        <translation>État</translation>
    </message>
    <message>
        <source>Address</source>
        <translation>Adresse</translation>
    </message>
    <message>
        <source>Gateway</source>
        <translation>Passerelle</translation>
    </message>
    <message>
        <source>Tunnels</source>
        <translation>Tunnels</translation>
    </message>
    <message>
        <source>Every tunnel, one per IPv4 uplink when the helper uses them all, the primary marked</source>
        <translation>Chaque tunnel, un par liaison montante IPv4 quand l’assistant les utilise toutes, le principal indiqué</translation>
    </message>
    <message>
        <source>Primary tunnel</source>
        <translation>Tunnel principal</translation>
    </message>
    <message>
        <source>Which tunnel the status page describes</source>
        <translation>Le tunnel que décrit la page État</translation>
    </message>
    <message>
        <source>seconds ago</source>
        <translation>secondes écoulées</translation>
    </message>
    <message>
        <source>Throughput</source>
        <translation>Débit</translation>
    </message>
    <message>
        <source>rate</source>
        <translation>débit</translation>
    </message>
    <message>
        <source>received</source>
        <translation>reçu</translation>
    </message>
    <message>
        <source>sent</source>
        <translation>envoyé</translation>
    </message>
    <message>
        <source>{chart}, in numbers</source>
        <translation>{chart}, en chiffres</translation>
    </message>
    <message>
        <source>Over the last 5 minutes</source>
        <translation>Sur les 5 dernières minutes</translation>
    </message>
    <message>
        <source>Counter</source>
        <translation>Compteur</translation>
    </message>
    <message>
        <source>Value</source>
        <translation>Valeur</translation>
    </message>
    <message>
        <source>Counters</source>
        <translation>Compteurs</translation>
    </message>
    <message>
        <source>The tunnel&apos;s counters since it started</source>
        <translation>Les compteurs du tunnel depuis son démarrage</translation>
    </message>
    <message>
        <source>Drop reason</source>
        <translation>Raison du rejet</translation>
    </message>
    <message>
        <source>Packets</source>
        <translation>Paquets</translation>
    </message>
    <message>
        <source>Drops by reason</source>
        <translation>Rejets par raison</translation>
    </message>
    <message>
        <source>Packets dropped, by why they were dropped</source>
        <translation>Paquets rejetés, par raison du rejet</translation>
    </message>
    <message>
        <source>Addresses drawn</source>
        <translation>Adresses tirées</translation>
    </message>
    <message>
        <source>How many tunnel addresses were drawn</source>
        <translation>Combien d’adresses de tunnel ont été tirées</translation>
    </message>
    <message>
        <source>Time</source>
        <translation>Heure</translation>
    </message>
    <message>
        <source>Reason</source>
        <translation>Raison</translation>
    </message>
    <message>
        <source>Previous address</source>
        <translation>Adresse précédente</translation>
    </message>
    <message>
        <source>New address</source>
        <translation>Nouvelle adresse</translation>
    </message>
    <message>
        <source>Address history</source>
        <translation>Historique des adresses</translation>
    </message>
    <message>
        <source>Every new tunnel address, newest first, with why it was drawn</source>
        <translation>Chaque nouvelle adresse du tunnel, la plus récente en premier, avec la raison de son tirage</translation>
    </message>
    <message>
        <source>Helper log</source>
        <translation>Journal de l’assistant</translation>
    </message>
    <message>
        <source>The helper&apos;s recent log, oldest first</source>
        <translation>Le journal récent de l’assistant, le plus ancien en premier</translation>
    </message>
    <message>
        <source>&amp;Refresh</source>
        <translation>&amp;Actualiser</translation>
    </message>
    <message>
        <source>Refresh log</source>
        <translation>Actualiser le journal</translation>
    </message>
    <message>
        <source>Read the helper&apos;s log again</source>
        <translation>Relire le journal de l’assistant</translation>
    </message>
    <message>
        <source>Cop&amp;y</source>
        <translation>Cop&amp;ier</translation>
    </message>
    <message>
        <source>Copy log</source>
        <translation>Copier le journal</translation>
    </message>
    <message>
        <source>Copy the log to the clipboard</source>
        <translation>Copier le journal dans le presse-papiers</translation>
    </message>
    <message>
        <source>Sa&amp;ve…</source>
        <translation>&amp;Enregistrer…</translation>
    </message>
    <message>
        <source>Save log</source>
        <translation>Enregistrer le journal</translation>
    </message>
    <message>
        <source>Save the log to a file</source>
        <translation>Enregistrer le journal dans un fichier</translation>
    </message>
    <message>
        <source>Connecting to the helper…</source>
        <translation>Connexion à l’assistant…</translation>
    </message>
    <message>
        <source>connected for {duration}</source>
        <translation>connecté depuis {duration}</translation>
    </message>
    <message>
        <source>&amp;Disconnect</source>
        <translation>Se &amp;déconnecter</translation>
    </message>
    <message>
        <source>The m6t helper is not reachable.</source>
        <translation>L’assistant m6t est injoignable.</translation>
    </message>
    <message>
        <source>{why} {hint}. Retrying in the background.</source>
        <translation>{why} {hint}. Nouvel essai en arrière-plan.</translation>
    </message>
    <message>
        <source>pid {pid}</source>
        <translation>pid {pid}</translation>
    </message>
    <message>
        <source>up {duration}</source>
        <translation>lancé depuis {duration}</translation>
    </message>
    <message>
        <source>operator access</source>
        <translation>accès opérateur</translation>
    </message>
    <message>
        <source>read-only access</source>
        <translation>accès en lecture seule</translation>
    </message>
    <message>
        <source>{interface} (primary)</source>
        <translation>{interface} (principal)</translation>
    </message>
    <message>
        <source>router {router}</source>
        <translation>routeur {router}</translation>
    </message>
    <message>
        <source>The Status page describes the primary tunnel, {interface}: the one on the path the system prefers toward the gateway.</source>
        <translation>La page État décrit le tunnel principal, {interface} : celui du chemin que le système préfère vers la passerelle.</translation>
    </message>
    <message>
        <source>none (no IPv4 path toward the gateway)</source>
        <translation>aucune (pas de chemin IPv4 vers la passerelle)</translation>
    </message>
    <message>
        <source>{mtu} bytes</source>
        <translation>{mtu} octets</translation>
    </message>
    <message>
        <source>path MTU {mtu} bytes at {clock} ({source})</source>
        <translation>MTU du chemin {mtu} octets à {clock} ({source})</translation>
    </message>
    <message>
        <source>path MTU {mtu} bytes ({source})</source>
        <translation>MTU du chemin {mtu} octets ({source})</translation>
    </message>
    <message>
        <source>none</source>
        <translation>aucun</translation>
    </message>
    <message>
        <source>none since the tray started</source>
        <translation>aucun depuis le lancement de l’icône</translation>
    </message>
    <message>
        <source>unknown</source>
        <translation>inconnue</translation>
    </message>
    <message>
        <source>{why}, path MTU {mtu}</source>
        <translation>{why}, MTU du chemin {mtu}</translation>
    </message>
    <message>
        <source>{mtu} bytes at {clock} ({why})</source>
        <translation>{mtu} octets à {clock} ({why})</translation>
    </message>
    <message>
        <source>{seconds} s</source>
        <translation>{seconds} s</translation>
    </message>
    <message numerus="yes">
        <source>%n new address(es) drawn, newest first.</source>
        <translation>
            <numerusform>%n nouvelle adresse tirée, la plus récente en premier.</numerusform>
            <numerusform>%n nouvelles adresses tirées, la plus récente en premier.</numerusform>
        </translation>
    </message>
    <message>
        <source>Round trip: last {last:.1f} ms, lowest {low:.1f} ms, average {avg:.1f} ms, highest {high:.1f} ms ({count} answers in 5 min).</source>
        <translation>Aller-retour : dernier {last:.1f} ms, minimum {low:.1f} ms, moyenne {avg:.1f} ms, maximum {high:.1f} ms ({count} réponses en 5 min).</translation>
    </message>
    <message>
        <source>Round trip: no keepalive answer in the last 5 minutes.</source>
        <translation>Aller-retour : aucune réponse aux keepalives ces 5 dernières minutes.</translation>
    </message>
    <message>
        <source>Received: now {rx_now}, average {rx_avg}, peak {rx_peak}. Sent: now {tx_now}, average {tx_avg}, peak {tx_peak}.</source>
        <translation>Reçu : maintenant {rx_now}, moyenne {rx_avg}, pointe {rx_peak}. Envoyé : maintenant {tx_now}, moyenne {tx_avg}, pointe {tx_peak}.</translation>
    </message>
    <message>
        <source>Throughput: no traffic measured in the last 5 minutes.</source>
        <translation>Débit : aucun trafic mesuré ces 5 dernières minutes.</translation>
    </message>
    <message>
        <source>probing…</source>
        <translation>mesure en cours…</translation>
    </message>
    <message>
        <source>{mtu} bytes (was {previous}) at {clock}</source>
        <translation>{mtu} octets (auparavant {previous}) à {clock}</translation>
    </message>
    <message>
        <source>MTU probe: the path carries {mtu}-byte IPv6 packets (was {previous}).</source>
        <translation>Mesure de la MTU : le chemin transporte des paquets IPv6 de {mtu} octets (auparavant {previous}).</translation>
    </message>
    <message>
        <source>{mtu} bytes at {clock}</source>
        <translation>{mtu} octets à {clock}</translation>
    </message>
    <message>
        <source>MTU probe: the path carries {mtu}-byte IPv6 packets.</source>
        <translation>Mesure de la MTU : le chemin transporte des paquets IPv6 de {mtu} octets.</translation>
    </message>
    <message>
        <source>failed: {why}</source>
        <translation>échec : {why}</translation>
    </message>
    <message>
        <source>MTU probe failed: {why}</source>
        <translation>La mesure de la MTU a échoué : {why}</translation>
    </message>
    <message>
        <source>JSON (*.json);;All files (*)</source>
        <translation>JSON (*.json);;Tous les fichiers (*)</translation>
    </message>
    <message>
        <source>Diagnostics failed: {why}</source>
        <translation>Échec des diagnostics : {why}</translation>
    </message>
    <message>
        <source>Diagnostics saved to {path}.</source>
        <translation>Diagnostics enregistrés dans {path}.</translation>
    </message>
    <message>
        <source>Collecting diagnostics…</source>
        <translation>Collecte des diagnostics…</translation>
    </message>
    <message>
        <source>Could not write {path}: {why}</source>
        <translation>Impossible d’écrire {path} : {why}</translation>
    </message>
    <message>
        <source>The log could not be read: {why}</source>
        <translation>Le journal n’a pas pu être lu : {why}</translation>
    </message>
    <message>
        <source>({count} older entries fell out of the helper&apos;s log)</source>
        <translation>({count} entrées plus anciennes sont sorties du journal de l’assistant)</translation>
    </message>
    <message>
        <source>Log copied to the clipboard.</source>
        <translation>Journal copié dans le presse-papiers.</translation>
    </message>
    <message>
        <source>Text (*.txt);;All files (*)</source>
        <translation>Texte (*.txt);;Tous les fichiers (*)</translation>
    </message>
    <message>
        <source>Log saved to {path}.</source>
        <translation>Journal enregistré dans {path}.</translation>
    </message>
</context>
<context>
    <name>TrayController</name>
    <message>
        <source>&amp;Connect</source>
        <translation>Se &amp;connecter</translation>
    </message>
    <message>
        <source>&amp;Status…</source>
        <translation>É&amp;tat…</translation>
    </message>
    <message>
        <source>S&amp;ettings…</source>
        <translation>&amp;Paramètres…</translation>
    </message>
    <message>
        <source>Copy tunnel &amp;address</source>
        <translation>Copier l’&amp;adresse du tunnel</translation>
    </message>
    <message>
        <source>Open &amp;log…</source>
        <translation>Ouvrir le &amp;journal…</translation>
    </message>
    <message>
        <source>E&amp;xport diagnostics…</source>
        <translation>E&amp;xporter les diagnostics…</translation>
    </message>
    <message>
        <source>&amp;Notifications</source>
        <translation>&amp;Notifications</translation>
    </message>
    <message>
        <source>&amp;Quit</source>
        <translation>&amp;Quitter</translation>
    </message>
    <message>
        <source>m6t: {state}</source>
        <translation>m6t : {state}</translation>
    </message>
    <message>
        <source>&amp;Disconnect</source>
        <translation>Se &amp;déconnecter</translation>
    </message>
    <message>
        <source>m6t: could not connect</source>
        <translation>m6t : connexion impossible</translation>
    </message>
    <message>
        <source>m6t: could not disconnect</source>
        <translation>m6t : déconnexion impossible</translation>
    </message>
    <message>
        <source>pending</source>
        <translation>en attente</translation>
    </message>
    <message>
        <source>Tunnel address {address} via {gateway}.</source>
        <translation>Adresse du tunnel {address} via {gateway}.</translation>
    </message>
    <message>
        <source>Tunnel address {address}.</source>
        <translation>Adresse du tunnel {address}.</translation>
    </message>
    <message>
        <source>m6t connected</source>
        <translation>m6t connecté</translation>
    </message>
    <message>
        <source>m6t: new tunnel address</source>
        <translation>m6t : nouvelle adresse de tunnel</translation>
    </message>
    <message>
        <source>m6t error</source>
        <translation>Erreur m6t</translation>
    </message>
    <message>
        <source>m6t helper not reachable</source>
        <translation>Assistant m6t injoignable</translation>
    </message>
</context>
<context>
    <name>TunnelModel</name>
    <message>
        <source>Read-only: {why}</source>
        <translation>Lecture seule : {why}</translation>
    </message>
    <message>
        <source>Connecting needs an administrator&apos;s password outside the active desktop session; an administrator can allow {action} for you.</source>
        <translation>Se connecter demande le mot de passe d’un administrateur en dehors de la session de bureau active ; un administrateur peut vous autoriser {action}.</translation>
    </message>
    <message>
        <source>An administrator can allow {action} for you (polkit) or add you to the operator group.</source>
        <translation>Un administrateur peut vous autoriser {action} (polkit) ou vous ajouter au groupe des opérateurs.</translation>
    </message>
</context>
<context>
    <name>errors</name>
    <message>
        <source>The request is not valid JSON.</source>
        <translation>La requête n’est pas du JSON valide.</translation>
    </message>
    <message>
        <source>The request is malformed.</source>
        <translation>La requête est mal formée.</translation>
    </message>
    <message>
        <source>The helper does not know this request.</source>
        <translation>L’assistant ne connaît pas cette requête.</translation>
    </message>
    <message>
        <source>The request is too long.</source>
        <translation>La requête est trop longue.</translation>
    </message>
    <message>
        <source>This client speaks a control API version the helper does not support.</source>
        <translation>Ce client parle une version de l’API de contrôle que l’assistant ne prend pas en charge.</translation>
    </message>
    <message>
        <source>Only root and members of the m6t operator group may change the tunnel.</source>
        <translation>Seuls root et les membres du groupe d’opérateurs m6t peuvent modifier le tunnel.</translation>
    </message>
    <message>
        <source>The helper is busy with another change; try again.</source>
        <translation>L’assistant est occupé par une autre modification ; réessayez.</translation>
    </message>
    <message>
        <source>The configuration is invalid; nothing was changed.</source>
        <translation>La configuration n’est pas valide ; rien n’a été modifié.</translation>
    </message>
    <message>
        <source>There is no such configuration setting.</source>
        <translation>Ce réglage de configuration n’existe pas.</translation>
    </message>
    <message>
        <source>The configuration could not be saved; nothing was changed.</source>
        <translation>La configuration n’a pas pu être enregistrée ; rien n’a été modifié.</translation>
    </message>
    <message>
        <source>The configuration file could not be loaded.</source>
        <translation>Le fichier de configuration n’a pas pu être chargé.</translation>
    </message>
    <message>
        <source>The TUN driver is not available on this computer.</source>
        <translation>Le pilote TUN n’est pas disponible sur cet ordinateur.</translation>
    </message>
    <message>
        <source>IPv6 is disabled on this computer.</source>
        <translation>IPv6 est désactivé sur cet ordinateur.</translation>
    </message>
    <message>
        <source>Another program already uses the tunnel interface name.</source>
        <translation>Un autre programme utilise déjà le nom de l’interface du tunnel.</translation>
    </message>
    <message>
        <source>The gateway&apos;s name cannot be resolved; retrying.</source>
        <translation>Le nom de la passerelle ne peut pas être résolu ; nouvel essai.</translation>
    </message>
    <message>
        <source>The operating system refused a network change.</source>
        <translation>Le système d’exploitation a refusé une modification du réseau.</translation>
    </message>
    <message>
        <source>The helper lacks the privileges it needs.</source>
        <translation>L’assistant n’a pas les privilèges nécessaires.</translation>
    </message>
    <message>
        <source>The tunnel interface could not be created.</source>
        <translation>L’interface du tunnel n’a pas pu être créée.</translation>
    </message>
    <message>
        <source>A setting of this computer drops the gateway&apos;s answers on one of its uplinks.</source>
        <translation>Un réglage de cet ordinateur rejette les réponses de la passerelle sur l&apos;une de ses liaisons montantes.</translation>
    </message>
    <message>
        <source>The tunnel reported an error.</source>
        <translation>Le tunnel a signalé une erreur.</translation>
    </message>
    <message>
        <source>The gateway does not answer.</source>
        <translation>La passerelle ne répond pas.</translation>
    </message>
    <message>
        <source>There is no IPv4 network toward the gateway.</source>
        <translation>Aucun réseau IPv4 vers la passerelle.</translation>
    </message>
    <message>
        <source>The gateway forgot this computer; reconnecting with a new address.</source>
        <translation>La passerelle a oublié cet ordinateur ; reconnexion avec une nouvelle adresse.</translation>
    </message>
    <message>
        <source>The MTU probe failed.</source>
        <translation>La mesure de la MTU a échoué.</translation>
    </message>
    <message>
        <source>The tunnel address could not be installed.</source>
        <translation>L’adresse du tunnel n’a pas pu être installée.</translation>
    </message>
    <message>
        <source>The tunnel is not up.</source>
        <translation>Le tunnel n’est pas établi.</translation>
    </message>
    <message>
        <source>The path to the gateway is narrower than configured; the MTU was lowered.</source>
        <translation>Le chemin vers la passerelle est plus étroit que configuré ; la MTU a été abaissée.</translation>
    </message>
    <message>
        <source>The Home Agent does not answer through the gateway on this port; trying again.</source>
        <translation>L’agent mère (Home Agent) ne répond pas à travers la passerelle sur ce port ; nouvel essai.</translation>
    </message>
    <message>
        <source>Nothing comes back through the tunnel for the traffic sent; trying again.</source>
        <translation>Rien ne revient par le tunnel pour le trafic envoyé ; nouvel essai.</translation>
    </message>
    <message>
        <source>The connection to the gateway could not be opened; retrying.</source>
        <translation>La connexion à la passerelle n’a pas pu être ouverte ; nouvel essai.</translation>
    </message>
    <message>
        <source>The helper hit an internal error.</source>
        <translation>L’assistant a rencontré une erreur interne.</translation>
    </message>
    <message>
        <source>Leftovers of a previous run could not all be removed.</source>
        <translation>Les restes d’une exécution précédente n’ont pas tous pu être supprimés.</translation>
    </message>
    <message>
        <source>The diagnostics bundle could not be written.</source>
        <translation>Le paquet de diagnostic n’a pas pu être écrit.</translation>
    </message>
    <message>
        <source>The helper could not save its state.</source>
        <translation>L’assistant n’a pas pu enregistrer son état.</translation>
    </message>
    <message>
        <source>The gateway only serves enrolled computers, and this one&apos;s key is not available.</source>
        <translation>La passerelle ne sert que les ordinateurs enrôlés, et la clé de celui-ci n’est pas disponible.</translation>
    </message>
</context>
<context>
    <name>preferences</name>
    <message>
        <source>All (connections, new addresses, errors)</source>
        <translation>Toutes (connexions, nouvelles adresses, erreurs)</translation>
    </message>
    <message>
        <source>Errors only</source>
        <translation>Erreurs seulement</translation>
    </message>
    <message>
        <source>None</source>
        <translation>Aucune</translation>
    </message>
</context>
<context>
    <name>state</name>
    <message>
        <source>Disconnected</source>
        <translation>Déconnecté</translation>
    </message>
    <message>
        <source>Waiting for network</source>
        <translation>En attente du réseau</translation>
    </message>
    <message>
        <source>Connecting</source>
        <translation>Connexion</translation>
    </message>
    <message>
        <source>Connected</source>
        <translation>Connecté</translation>
    </message>
    <message>
        <source>Connected, gateway not answering</source>
        <translation>Connecté, la passerelle ne répond pas</translation>
    </message>
    <message>
        <source>Error</source>
        <translation>Erreur</translation>
    </message>
    <message>
        <source>Helper not reachable</source>
        <translation>Assistant injoignable</translation>
    </message>
    <message>
        <source>Waiting for an IPv4 network</source>
        <translation>En attente d’un réseau IPv4</translation>
    </message>
    <message>
        <source>This network needs you to sign in</source>
        <translation>Ce réseau vous demande de vous identifier</translation>
    </message>
    <message>
        <source>Connecting to the gateway</source>
        <translation>Connexion à la passerelle</translation>
    </message>
    <message>
        <source>connected to a network</source>
        <translation>connecté à un réseau</translation>
    </message>
    <message>
        <source>the network changed</source>
        <translation>le réseau a changé</translation>
    </message>
    <message>
        <source>the gateway lost the binding</source>
        <translation>la passerelle a perdu l’association</translation>
    </message>
    <message>
        <source>the Home Agent stopped answering</source>
        <translation>l’agent mère ne répond plus</translation>
    </message>
    <message>
        <source>nothing came back through the tunnel</source>
        <translation>rien n’est revenu par le tunnel</translation>
    </message>
    <message>
        <source>moved to the next gateway port</source>
        <translation>passage au port suivant de la passerelle</translation>
    </message>
    <message>
        <source>moved to another gateway</source>
        <translation>passage à une autre passerelle</translation>
    </message>
    <message>
        <source>the configuration changed</source>
        <translation>la configuration a changé</translation>
    </message>
    <message>
        <source>reconnected</source>
        <translation>reconnecté</translation>
    </message>
    <message>
        <source>retrying after an error</source>
        <translation>nouvel essai après une erreur</translation>
    </message>
    <message>
        <source>unknown reason</source>
        <translation>raison inconnue</translation>
    </message>
    <message>
        <source>{days} d {hours} h</source>
        <translation>{days} j {hours} h</translation>
    </message>
    <message>
        <source>{hours} h {minutes:02d} min</source>
        <translation>{hours} h {minutes:02d} min</translation>
    </message>
    <message>
        <source>{minutes} min {seconds:02d} s</source>
        <translation>{minutes} min {seconds:02d} s</translation>
    </message>
    <message>
        <source>{seconds} s</source>
        <translation>{seconds} s</translation>
    </message>
    <message>
        <source>less than a minute</source>
        <translation>moins d’une minute</translation>
    </message>
    <message>
        <source>{minutes} min</source>
        <translation>{minutes} min</translation>
    </message>
    <message>
        <source>{interface} via {uplink}</source>
        <translation>{interface} via {uplink}</translation>
    </message>
    <message>
        <source>{tunnel}: {state}, {address}</source>
        <translation>{tunnel} : {state}, {address}</translation>
    </message>
    <message>
        <source>{tunnel}: {state}</source>
        <translation>{tunnel} : {state}</translation>
    </message>
    <message>
        <source>Tunnels connected: {connected} of {total}</source>
        <translation>Tunnels connectés : {connected} sur {total}</translation>
    </message>
    <message>
        <source>m6t: helper not reachable</source>
        <translation>m6t : assistant injoignable</translation>
    </message>
    <message>
        <source>m6t: {state}</source>
        <translation>m6t : {state}</translation>
    </message>
    <message>
        <source>Address: {address}</source>
        <translation>Adresse : {address}</translation>
    </message>
    <message>
        <source>Gateway: {gateway}</source>
        <translation>Passerelle : {gateway}</translation>
    </message>
    <message>
        <source>Connected for {duration}</source>
        <translation>Connecté depuis {duration}</translation>
    </message>
    <message>
        <source>Start it with: sudo systemctl start m6t-helper</source>
        <translation>Démarrez-le avec : sudo systemctl start m6t-helper</translation>
    </message>
    <message>
        <source>Start it with: sudo launchctl kickstart system/org.m6t.helper</source>
        <translation>Démarrez-le avec : sudo launchctl kickstart system/org.m6t.helper</translation>
    </message>
    <message>
        <source>Start the “m6t helper” service (services.msc), or run: sc start m6t-helper</source>
        <translation>Démarrez le service « m6t helper » (services.msc), ou lancez : sc start m6t-helper</translation>
    </message>
    <message>
        <source>Start it as root with: m6t-helper</source>
        <translation>Démarrez-le en root avec : m6t-helper</translation>
    </message>
</context>
</TS>
