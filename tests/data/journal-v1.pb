 
firmware-update-7 (€Ðß´«3